//! The pipeline file's parsing and checks.

use super::*;

const GOOD: &str = r#"
[[stream]]
name = "events"
shards = 4

[[stream]]
name = "events-dlq"

[[schema]]
name = "event"
event_time = "ts"
fields = [
  { name = "id", type = "string" },
  { name = "ts", type = "timestamp" },
]

[[processor]]
name = "to-lake"
stream = "events"
schema = "event"
on_failure = "events-dlq"

[lake]
max_buffer_seconds = 5
"#;

fn error_of(text: &str) -> String {
    PipelineConfig::parse(text, Path::new("p.toml"))
        .expect_err("invalid")
        .to_string()
}

const MODEL: &str = "\n[[model]]\nname = \"fraud\"\nfeatures = [\"amount\", \"hour\"]\nlabels = \"events-dlq\"\nretrain = { every_seconds = 60, cooldown_seconds = 1.5 }\npromotion = { mode = \"canary\", canary_share = 0.2 }\n";

#[test]
fn an_aws_source_batch_size_is_within_get_records_limits() {
    let source = |kind: &str, extra: &str| {
        let service = if kind == "kinesis" {
            "stream = \"clicks\""
        } else {
            "stream_arn = \"arn:aws:dynamodb:us-east-1:1:table/t/stream/x\""
        };
        format!("{GOOD}\n[[source]]\nname = \"s\"\ntype = \"{kind}\"\n{service}\nschema = \"event\"\n{extra}\n")
    };
    let config = PipelineConfig::parse(&source("kinesis", ""), Path::new("p.toml")).expect("valid");
    assert_eq!(*config.kinesis[0].batch_size.get_ref(), 1000);
    let config = PipelineConfig::parse(
        &source("kinesis", "batch_size = 10000"),
        Path::new("p.toml"),
    )
    .expect("valid");
    assert_eq!(*config.kinesis[0].batch_size.get_ref(), 10_000);
    let error = error_of(&source("kinesis", "batch_size = 10001"));
    assert!(
        error.contains("batch_size must be between 1 and 10000"),
        "{error}"
    );
    assert!(error.starts_with("p.toml:"), "{error}");
    let error = error_of(&source("dynamodb", "batch_size = 2000"));
    assert!(error.contains("between 1 and 1000"), "{error}");
    assert!(error_of(&source("dynamodb", "batch_size = 0")).contains("not 0"));
}

#[test]
fn a_model_declaration_becomes_its_lifecycle() {
    let config =
        PipelineConfig::parse(&format!("{GOOD}{MODEL}"), Path::new("p.toml")).expect("valid");
    let model = &config.models[0];
    assert_eq!(model.joined_table(), "fraud_joined");
    let lifecycle = model.lifecycle().expect("lifecycle");
    assert_eq!(
        lifecycle.promotion,
        crate::lifecycle::Promotion::Canary(0.2)
    );
    assert_eq!(
        lifecycle.retrain_every,
        Some(std::time::Duration::from_secs(60))
    );
    assert_eq!(lifecycle.cooldown, std::time::Duration::from_millis(1500));
    assert!(lifecycle.retrain_on_drift);
}

#[test]
fn monitors_are_declared_per_model_and_unknown_ones_are_refused_at_their_line() {
    let monitors = "monitors = { concept = { detector = \"ddm\", drift_threshold = 2.5 }, data = { test = \"ks\", threshold = 0.01, window = 500, every = 100 }, retrain_on = [\"concept\", \"data\"] }\n";
    let text = format!("{GOOD}{MODEL}{monitors}");
    let config = PipelineConfig::parse(&text, Path::new("p.toml")).expect("valid");
    let lifecycle = config.models[0].lifecycle().expect("lifecycle");
    assert_eq!(lifecycle.concept.detector, "ddm");
    assert_eq!(lifecycle.concept.params.get("drift_threshold"), Some(&2.5));
    assert_eq!(
        lifecycle.data_test,
        driftline_ml::drift::monitor::DataTest::Ks
    );
    assert_eq!(
        (lifecycle.data_window, lifecycle.data_check_every),
        (500, 100)
    );
    assert!(lifecycle.retrain_on_drift && lifecycle.retrain_on_data);
    // the default: concept alarms retrain, data alarms do not
    let plain =
        PipelineConfig::parse(&format!("{GOOD}{MODEL}"), Path::new("p.toml")).expect("valid");
    let lifecycle = plain.models[0].lifecycle().expect("lifecycle");
    assert!(lifecycle.retrain_on_drift && !lifecycle.retrain_on_data);
    assert_eq!(lifecycle.concept.detector, "adwin");

    let line = GOOD.matches('\n').count() + MODEL.matches('\n').count() + 1;
    for (bad, expected) in [
        ("\"ddm\"", "unknown detector \"dmm\""),
        ("drift_threshold", "ddm has no parameter \"drift_treshold\""),
        ("\"ks\"", "unknown test \"kz\""),
        ("\"data\"]", "unknown alarm \"dat\""),
    ] {
        let wrong = match bad {
            "\"ddm\"" => monitors.replace(bad, "\"dmm\""),
            "drift_threshold" => monitors.replace(bad, "drift_treshold"),
            "\"ks\"" => monitors.replace(bad, "\"kz\""),
            _ => monitors.replace(bad, "\"dat\"]"),
        };
        let error = error_of(&format!("{GOOD}{MODEL}{wrong}"));
        assert!(
            error.contains(expected),
            "{error:?} should say {expected:?}"
        );
        assert!(error.starts_with(&format!("p.toml:{line}:")), "{error}");
    }
    let both = MODEL.replace("every_seconds = 60", "on_drift = false, every_seconds = 60");
    let error = error_of(&format!("{GOOD}{both}{monitors}"));
    assert!(error.contains("keep one"), "{error}");
}

#[test]
fn a_bad_model_declaration_names_its_line_and_what_is_wrong() {
    let with = |from: &str, to: &str| error_of(&format!("{GOOD}{}", MODEL.replace(from, to)));
    let line = GOOD.matches('\n').count() + 2;
    let cases = [
        (
            with("labels = \"events-dlq\"", "labels = \"nope\""),
            "labels stream \"nope\" is not defined",
        ),
        (with("\"canary\"", "\"yolo\""), "promotion.mode must be"),
        (
            with("canary_share = 0.2", "canary_share = 2.0"),
            "canary_share must be between 0 and 1",
        ),
        (
            with("\"hour\"]", "\"label\"]"),
            "feature \"label\" has the name of a column",
        ),
        (
            with("\"hour\"]", "\"amount\"]"),
            "feature \"amount\" is listed twice",
        ),
        (
            with("every_seconds", "every_second"),
            "unknown field `every_second`",
        ),
        (
            with("name = \"fraud\"", "name = \"fr aud\""),
            "must be 1-100 letters",
        ),
        (
            with(
                "features = [\"amount\", \"hour\"]",
                "features = [\"amount\"]\nlearner = \"magic\"",
            ),
            "learner",
        ),
    ];
    for (error, expected) in cases {
        assert!(
            error.contains(expected),
            "{error:?} should say {expected:?}"
        );
        assert!(error.starts_with("p.toml:"), "{error}");
    }
    // the line of the model's name for what is wrong with the model as a whole
    let error = with("canary_share = 0.2", "canary_share = 2.0");
    assert!(
        error.starts_with(&format!("p.toml:{}:", line + 1)),
        "{error}"
    );
    // its streams are its own
    let clash = format!("{GOOD}\n[[stream]]\nname = \"fraud-joined\"\n{MODEL}");
    assert!(
        error_of(&clash).contains("is made for model"),
        "{}",
        error_of(&clash)
    );
}

#[test]
fn a_good_config_loads() {
    let config = PipelineConfig::parse(GOOD, Path::new("p.toml")).expect("valid");
    assert_eq!(config.streams[0].shards, 4);
    assert_eq!(config.processors[0].table(), "to-lake");
    assert_eq!(config.lake.expect("lake").max_buffer_seconds, 5);
}

#[test]
fn an_unknown_key_names_the_file_and_line() {
    let text = GOOD.replace("shards = 4", "shards = 4\nshardz = 3");
    let error = error_of(&text);
    assert!(
        error.starts_with("p.toml:5: unknown field `shardz`"),
        "{error}"
    );
}

#[test]
fn a_wrong_type_names_the_line_and_the_expected_type() {
    let error = error_of(&GOOD.replace("shards = 4", "shards = \"four\""));
    assert!(
        error.starts_with("p.toml:4: invalid type: string \"four\", expected u32"),
        "{error}"
    );
}

#[test]
fn an_undefined_reference_names_its_line_and_the_known_names() {
    let error = error_of(&GOOD.replace("on_failure = \"events-dlq\"", "on_failure = \"nowhere\""));
    assert!(
        error.starts_with("p.toml:21: on_failure stream \"nowhere\" is not defined"),
        "{error}"
    );
    assert!(error.contains("\"events-dlq\""), "{error}");
    let error = error_of(&GOOD.replace("schema = \"event\"", "schema = \"evnt\""));
    assert!(
        error.starts_with("p.toml:20: schema \"evnt\" is not defined"),
        "{error}"
    );
}

#[test]
fn streams_can_be_put_on_kinesis_from_outside_and_are_checked_again() {
    let config = PipelineConfig::parse(GOOD, Path::new("p.toml")).expect("valid");
    let urls = [("events".to_string(), "kinesis://stack-events".to_string())];
    let moved = config
        .clone()
        .with_stream_urls(&urls, GOOD, Path::new("p.toml"))
        .expect("valid");
    assert_eq!(moved.streams[0].kinesis(), Some("stack-events"));
    let unknown = [("nope".to_string(), "kinesis://x".to_string())];
    let error = config
        .clone()
        .with_stream_urls(&unknown, GOOD, Path::new("p.toml"))
        .expect_err("unknown")
        .to_string();
    assert!(
        error.contains("--stream-url nope=kinesis://x: the pipeline declares no such stream"),
        "{error}"
    );
    // checked again: a processor on it keeps its knobs (parallel batches
    // included), but a bad URL is refused
    let parallel = GOOD.replace(
        "on_failure = \"events-dlq\"",
        "on_failure = \"events-dlq\"\nparallelization_factor = 2",
    );
    let config = PipelineConfig::parse(&parallel, Path::new("p.toml")).expect("valid");
    assert!(config
        .with_stream_urls(&urls, &parallel, Path::new("p.toml"))
        .is_ok());
}

#[test]
fn a_stream_on_kinesis_is_named_by_its_url_and_checked() {
    let on_kinesis = GOOD.replace("shards = 4", "shards = 4\nurl = \"kinesis://events-prod\"");
    let config = PipelineConfig::parse(&on_kinesis, Path::new("p.toml")).expect("valid");
    assert_eq!(config.streams[0].kinesis(), Some("events-prod"));
    assert_eq!(config.streams[1].kinesis(), None);
    let error = error_of(&GOOD.replace("shards = 4", "shards = 4\nurl = \"kafka://events\""));
    assert!(
        error.starts_with("p.toml:5: url must be kinesis://NAME"),
        "{error}"
    );
    let error = error_of(&GOOD.replace("shards = 4", "shards = 4\nurl = \"kinesis://a b\""));
    assert!(error.contains("Kinesis stream name"), "{error}");
    // a processor of a stream on Kinesis has every knob of the embedded log's
    let knobs = on_kinesis.replace(
        "on_failure = \"events-dlq\"",
        "on_failure = \"events-dlq\"\nparallelization_factor = 4\nmaximum_record_age_s = 60",
    );
    let config = PipelineConfig::parse(&knobs, Path::new("p.toml")).expect("valid");
    assert_eq!(config.processors[0].parallelization_factor, 4);
    assert_eq!(config.processors[0].maximum_record_age_s, Some(60));
    // one Kinesis stream, one use
    let twice = on_kinesis.replace(
        "name = \"events-dlq\"",
        "name = \"events-dlq\"\nurl = \"kinesis://events-prod\"",
    );
    let error = error_of(&twice);
    assert!(
        error.contains("kinesis://events-prod is used twice"),
        "{error}"
    );
    // Lambda reads Kinesis only
    let error = error_of(&GOOD.replace(
        "on_failure = \"events-dlq\"",
        "on_failure = \"events-dlq\"\nruns_on = \"lambda\"",
    ));
    assert!(
        error.contains("runs_on = \"lambda\" needs a stream on Kinesis"),
        "{error}"
    );
    let on_lambda = on_kinesis.replace(
        "on_failure = \"events-dlq\"",
        "on_failure = \"events-dlq\"\nruns_on = \"lambda\"\nparallelization_factor = 4",
    );
    let config = PipelineConfig::parse(&on_lambda, Path::new("p.toml")).expect("valid");
    assert!(config.processors[0].runs_on_lambda());
    // a model's labels may arrive on Kinesis too
    let dlq_on_kinesis = GOOD.replace(
        "name = \"events-dlq\"",
        "name = \"events-dlq\"\nurl = \"kinesis://labels\"",
    );
    PipelineConfig::parse(&format!("{dlq_on_kinesis}{MODEL}"), Path::new("p.toml"))
        .expect("labels on Kinesis");
    // the prediction log can go to Kinesis
    let logged = format!("{GOOD}{MODEL}prediction_log = \"kinesis://fraud-predictions\"\n");
    let config = PipelineConfig::parse(&logged, Path::new("p.toml")).expect("valid");
    assert_eq!(
        config.models[0].prediction_log_stream(),
        Some("fraud-predictions")
    );
    let error = error_of(&format!("{GOOD}{MODEL}prediction_log = \"s3://x\"\n"));
    assert!(error.contains("url must be kinesis://NAME"), "{error}");
}

#[test]
fn a_transform_that_does_not_compile_names_its_line() {
    let text = GOOD.replace(
        "on_failure = \"events-dlq\"",
        "on_failure = \"events-dlq\"\ntransform = \".a | nosuch(1)\"",
    );
    let error = error_of(&text);
    assert!(
        error.starts_with("p.toml:22: the jq program uses undefined names: nosuch"),
        "{error}"
    );
}

#[test]
fn a_landing_source_is_checked_like_a_processor_and_its_prefix_kept_apart() {
    let source =
        "\n[[source]]\nname = \"uploads\"\nprefix = \"landing/uploads\"\nschema = \"event\"\ntype = \"landing\"\n";
    let config =
        PipelineConfig::parse(&format!("{GOOD}{source}"), Path::new("p.toml")).expect("valid");
    assert_eq!(config.sources[0].table(), "uploads");
    let error = error_of(&format!(
        "{GOOD}{}",
        source.replace("landing/uploads", "to-lake/x")
    ));
    assert!(
        error
            .starts_with("p.toml:28: prefix \"to-lake/x\" must be a folder of the lake of its own"),
        "{error}"
    );
    let error = error_of(&format!(
        "{GOOD}{}",
        source.replace("\"event\"", "\"nope\"")
    ));
    assert!(
        error.starts_with("p.toml:29: schema \"nope\" is not defined"),
        "{error}"
    );
    let error = error_of(&format!(
        "{GOOD}{}",
        source.replace("uploads\"\nprefix", "to-lake\"\nprefix")
    ));
    assert!(
        error.contains("\"to-lake\" names two processors or sources"),
        "{error}"
    );
}

#[test]
fn a_bad_field_type_and_a_bad_event_time_are_refused() {
    let error = error_of(&GOOD.replace("type = \"string\"", "type = \"text\""));
    assert!(error.contains("unknown variant `text`"), "{error}");
    let error = error_of(&GOOD.replace("event_time = \"ts\"", "event_time = \"id\""));
    assert!(error.contains("must be a required timestamp"), "{error}");
}

#[test]
fn every_source_is_one_tagged_table_and_the_old_forms_still_read_with_a_notice() {
    let tagged = format!(
        "{GOOD}
[[source]]
name = \"uploads\"
type = \"landing\"
prefix = \"landing/uploads\"
schema = \"event\"

[[source]]
name = \"clicks\"
type = \"kinesis\"
stream = \"clicks\"
schema = \"event\"
starting_position = \"latest\"

[[source]]
name = \"accounts\"
type = \"dynamodb\"
stream_arn = \"arn:aws:dynamodb:us-east-1:1:table/t/stream/x\"
schema = \"event\"
poll_ms = 250
"
    );
    let config = PipelineConfig::parse(&tagged, Path::new("p.toml")).expect("valid");
    assert!(config.notices.is_empty(), "{:?}", config.notices);
    assert_eq!(config.sources[0].poll_seconds, 2);
    assert_eq!(config.kinesis[0].stream.get_ref(), "clicks");
    assert_eq!(
        config.kinesis[0].starting_position,
        StartingPosition::Latest
    );
    assert_eq!(config.dynamodb[0].poll_ms, 250);

    // the old forms: [[source]] without a type, [[kinesis]], [[dynamodb]]
    let old = format!(
        "{GOOD}
[[source]]
name = \"uploads\"
prefix = \"landing/uploads\"
schema = \"event\"

[[kinesis]]
name = \"clicks\"
stream = \"clicks\"
schema = \"event\"

[[dynamodb]]
name = \"accounts\"
stream_arn = \"arn:aws:dynamodb:us-east-1:1:table/t/stream/x\"
schema = \"event\"
"
    );
    let config = PipelineConfig::parse(&old, Path::new("p.toml")).expect("still valid");
    assert_eq!(
        (
            config.sources.len(),
            config.kinesis.len(),
            config.dynamodb.len()
        ),
        (1, 1, 1)
    );
    assert_eq!(
        config.notices,
        [
            "p.toml:27: source \"uploads\" has no type: read as type = \"landing\"; write it",
            "p.toml:32: [[kinesis]] is the old form: write [[source]] with type = \"kinesis\"",
            "p.toml:37: [[dynamodb]] is the old form: write [[source]] with type = \"dynamodb\"",
        ]
    );
}

#[test]
fn a_source_key_of_another_type_or_an_unknown_type_names_its_line() {
    let source =
        |body: &str| format!("{GOOD}\n[[source]]\nname = \"s\"\nschema = \"event\"\n{body}\n");
    let error = error_of(&source(
        "type = \"kinesis\"\nstream = \"clicks\"\nprefix = \"x\"",
    ));
    assert_eq!(
        error,
        "p.toml:31: prefix does not apply to a source of type \"kinesis\""
    );
    let error = error_of(&source(
        "type = \"landing\"\nprefix = \"up\"\nbatch_size = 10",
    ));
    assert_eq!(
        error,
        "p.toml:31: batch_size does not apply to a source of type \"landing\""
    );
    let error = error_of(&source("type = \"dynamodb\""));
    assert!(
        error.starts_with("p.toml:27: dynamodb source \"s\" needs a stream_arn"),
        "{error}"
    );
    let error = error_of(&source("type = \"sqs\""));
    assert_eq!(
        error,
        "p.toml:29: type must be \"landing\", \"kinesis\" or \"dynamodb\", not \"sqs\""
    );
    let error = error_of(&source("type = \"landing\"\nprefix = \"up\"\nqueue = 1"));
    assert!(
        error.starts_with("p.toml:31: unknown field `queue`"),
        "{error}"
    );
}
