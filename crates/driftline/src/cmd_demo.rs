//! `driftline demo`: the whole loop on a built-in card-transaction stream
//! whose fraud pattern changes abruptly and then gradually, with labels
//! arriving late. It runs the real parts on loopback (the stream with its
//! Kinesis API and NDJSON ingest, the lake delivery, the prediction API, the
//! lifecycle and the registry) and drives them over HTTP as a client would.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use driftline_lake::{Lake, Registry};
use driftline_log::{LogConfig, StreamSpec};
use driftline_ml::features::Encoder;
use driftline_ml::learn::artifact;
use driftline_ml::synth::{Concept, FraudStream, Transaction, FRAUD_FEATURES};
use driftline_pipeline::lifecycle::{LifecycleEvent, ModelService, Promotion};
use driftline_pipeline::training::TrainingSource;
use driftline_pipeline::PipelineConfig;
use serde_json::{json, Value};

/// The demo's pipeline: transactions into the lake, partitioned by event
/// time, and the model it serves (one definition, which the lifecycle
/// parity test replays too).
pub const PIPELINE: &str = include_str!("../demo/PIPELINE.toml");

const BOOTSTRAP: usize = 2000;
const BATCH: usize = 100;
const MARKER: &str = ".driftline-demo";

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Transactions to stream (after the 2,000 the first model is trained on).
    #[arg(long, default_value_t = 60_000)]
    events: u64,
    /// Events per second, or "unlimited".
    #[arg(long, default_value = "2000")]
    rate: String,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Where the stream, the lake and the registry are left for inspection.
    #[arg(long, default_value = "driftline-demo")]
    dir: PathBuf,
    /// Writes the summary as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Labels arrive this many events after their prediction.
    #[arg(long, default_value_t = 200)]
    label_delay: usize,
    /// The learner retrains use (default: the demo model's, gbt).
    #[arg(long)]
    learner: Option<String>,
    /// How a challenger that passed the gate reaches traffic: direct, shadow,
    /// or canary:SHARE (e.g. canary:0.1); default: the demo model's, direct.
    #[arg(long, value_parser = parse_promotion)]
    promotion: Option<Promotion>,
    /// Address of the demo's server (the Kinesis API, ingest and predictions).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

fn parse_promotion(text: &str) -> Result<Promotion, String> {
    match text {
        "direct" => Ok(Promotion::Direct),
        "shadow" => Ok(Promotion::Shadow),
        other => other
            .strip_prefix("canary:")
            .and_then(|share| share.parse::<f64>().ok())
            .filter(|share| *share > 0.0 && *share < 1.0)
            .map(Promotion::Canary)
            .ok_or_else(|| {
                format!("expected direct, shadow or canary:SHARE with 0 < SHARE < 1, not {other:?}")
            }),
    }
}

fn prepare(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        if !dir.join(MARKER).exists() {
            anyhow::bail!(
                "{} exists and is not a demo directory; choose another with --dir",
                dir.display()
            );
        }
        for part in ["data", "lake"] {
            let path = dir.join(part);
            if path.exists() {
                std::fs::remove_dir_all(&path)
                    .with_context(|| format!("cannot clear {}", path.display()))?;
            }
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "a driftline demo: `driftline demo` clears and refills it\n",
    )?;
    Ok(())
}

fn transaction_json(i: u64, t: &Transaction) -> Value {
    let mut event = t.features.clone();
    // one event a second of simulated time, from 2026-11-25T00:00:00Z
    let ts = 1_795_564_800 + i as i64;
    let time = rfc3339(ts);
    if let Value::Object(map) = &mut event {
        map.insert("id".into(), json!(format!("tx-{i}")));
        map.insert("ts".into(), json!(time));
    }
    event
}

/// RFC 3339 for seconds since the epoch (UTC).
fn rfc3339(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    // The demo serves every route without keys: loopback only.
    anyhow::ensure!(
        args.listen.ip().is_loopback(),
        "the demo serves without keys, so it listens on loopback only, not {}; serve a pipeline beyond it with `driftline run --auth FILE`",
        args.listen
    );
    let rate: Option<f64> = match args.rate.as_str() {
        "unlimited" => None,
        r => Some(r.parse().ok().filter(|r: &f64| *r > 0.0).with_context(|| {
            format!("--rate must be a positive number or \"unlimited\", not {r:?}")
        })?),
    };
    prepare(&args.dir)?;
    let config = PipelineConfig::parse(PIPELINE, Path::new("the demo pipeline"))?;
    let state = driftline_server::open_state(&args.dir.join("data"), LogConfig::default(), None)?;
    let store = state.kinesis.store.clone();
    for stream in &config.streams {
        let spec = StreamSpec {
            name: stream.name.get_ref().clone(),
            shard_count: stream.shards,
            ..StreamSpec::default()
        };
        store.create_stream(spec, driftline_log::now_ms())?;
    }
    let lake = Lake::open(
        args.dir
            .join("lake")
            .to_str()
            .context("the demo directory must be UTF-8")?,
    )?;
    let registry = Registry::new(lake.clone(), "fraud")?;
    let model = config
        .models
        .first()
        .cloned()
        .context("the demo pipeline declares its model")?;
    let mut lifecycle = model
        .lifecycle()
        .map_err(|(line, message)| anyhow::anyhow!("the demo pipeline:{line}: {message}"))?;
    if let Some(learner) = &args.learner {
        lifecycle.learner = learner.clone();
    }
    if let Some(promotion) = args.promotion {
        lifecycle.promotion = promotion;
    }
    let learner = lifecycle.learner.clone();
    // Left beside the lake, so that the run can be replayed:
    // `driftline backtest --pipeline DIR/PIPELINE.toml --model fraud fraud_joined`.
    let lake_dir = std::path::absolute(args.dir.join("lake"))?;
    // A JSON string is a TOML basic string too.
    let lake_url = serde_json::to_string(&lake_dir.display().to_string())?;
    std::fs::write(
        args.dir.join("PIPELINE.toml"),
        PIPELINE.replacen("[lake]\n", &format!("[lake]\nurl = {lake_url}\n"), 1),
    )?;
    let started = Instant::now();
    crate::listen::runtime()?.block_on(async move {
        let (listener, addr) = crate::listen::bind(args.listen).await?;
        let endpoint = format!("http://{addr}");
        println!("driftline demo: {} card transactions, fraud pattern changes abruptly at a third and gradually from 60 % to 80 %", args.events);
        println!("  server   {endpoint} (Kinesis API, NDJSON ingest, /v1/models/fraud/predict)");
        println!("  state    {} (stream, lake, registry: left for inspection)", args.dir.display());

        // the first model, trained on history whose labels are known
        let mut stream = FraudStream::new(args.seed, args.events + BOOTSTRAP as u64);
        let mut encoder = Encoder::numeric(&FRAUD_FEATURES);
        let history: Vec<(Vec<f64>, usize)> = stream
            .by_ref()
            .take(BOOTSTRAP)
            .map(|t| Ok((encoder.encode_json(&t.features)?, usize::from(t.fraud))))
            .collect::<anyhow::Result<_>>()?;
        let first = ModelService::bootstrap(&registry, &lifecycle, encoder, 2, history).await?;
        let baseline = artifact::load(&registry.artifact(&registry.champion().await?.context("bootstrap made a champion")?.record).await?)?;
        println!("  model    v{} ({learner}) trained on {BOOTSTRAP} labelled transactions", first.version);
        let predictions = store.stream("predictions")?;
        let service = ModelService::new("fraud", lifecycle, 2, registry.clone(), first, Some(predictions as std::sync::Arc<dyn driftline_log::StreamWriter>));
        state.models.add(service.clone());

        let joined = crate::assembly::streams::stream_or_create(&store, &model.joined_stream(), 2)?;
        service.log_joined_to(joined.clone());
        // retrains read those examples back from the lake (the newest from the stream)
        service.train_from(TrainingSource::new(lake.clone(), &model.joined_table(), joined.clone()));
        // the lake delivery of the transactions and of the joined examples
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let streams = crate::assembly::streams::PipelineStreams::embedded(store.clone());
        let mut stages = crate::assembly::start_stages(&config, &streams, &lake, None, &stop_rx)?;
        let (_, mut joined_stage) = crate::assembly::models::joined_stage(&config, &model, joined, &lake, &stop_rx)?;
        joined_stage.0 = model.joined_table();
        stages.push(joined_stage);
        let (server_stop, server_stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(driftline_server::serve(state, listener, None, async move {
            let _ = server_stopped.await;
        }));

        // lifecycle events, printed as they happen
        let mut events = service.subscribe();
        let printer = tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                let at = started.elapsed().as_secs_f64();
                println!("[{at:6.1}s] {}", describe(&event));
                let _ = std::io::stdout().flush();
            }
        });

        // the client: ingest, predict, label late, over HTTP
        let client_service = service.clone();
        let (events_total, delay) = (args.events, args.label_delay);
        let outcome = tokio::task::spawn_blocking(move || {
            drive(&endpoint, stream, events_total, delay, rate, &client_service, baseline.0.as_ref(), started)
        })
        .await??;

        // let a retrain that is under way finish, then stop
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = stop_tx.send(true);
        let mut rows = BTreeMap::new();
        for (name, stats, task) in stages {
            task.await??;
            rows.insert(name, stats.rows_delivered.load(Ordering::Relaxed));
        }
        let _ = server_stop.send(());
        server.await??;
        printer.abort();
        summarize(&args, &service, &outcome, &rows, started)
    })
}

/// What the client saw: per phase of the stream, how often the served
/// model and the never-retrained first model were right.
#[derive(Default)]
struct Outcome {
    phases: [(u64, u64, u64); 3],
}

#[allow(clippy::too_many_arguments)]
fn drive(
    endpoint: &str,
    stream: FraudStream,
    events: u64,
    delay: usize,
    rate: Option<f64>,
    service: &ModelService,
    frozen: &dyn driftline_ml::learn::Classifier,
    started: Instant,
) -> anyhow::Result<Outcome> {
    let agent = ureq::Agent::new_with_defaults();
    let post = |path: &str, body: String| -> anyhow::Result<Value> {
        let mut response = agent
            .post(&format!("{endpoint}{path}"))
            .header("content-type", "application/json")
            .send(body)
            .with_context(|| format!("POST {path}"))?;
        Ok(response.body_mut().read_json()?)
    };
    let encoder = Encoder::numeric(&FRAUD_FEATURES);
    let mut outcome = Outcome::default();
    let mut waiting: VecDeque<(String, bool)> = VecDeque::new();
    let mut last_progress = Instant::now();
    let (abrupt, gradual) = (stream.abrupt_at, stream.gradual_from);
    let mut stream = stream;
    let mut sent = 0u64;
    while sent < events {
        let batch: Vec<(u64, Transaction)> = (sent..(sent + BATCH as u64).min(events))
            .filter_map(|i| stream.next().map(|t| (i, t)))
            .collect();
        let lines: Vec<String> = batch
            .iter()
            .map(|(i, t)| transaction_json(*i, t).to_string())
            .collect();
        post(
            "/v1/streams/transactions/records?partition_key=id",
            lines.join("\n"),
        )?;
        let instances: Vec<&Value> = batch.iter().map(|(_, t)| &t.features).collect();
        let answer = post(
            "/v1/models/fraud/predict",
            json!({"instances": instances}).to_string(),
        )?;
        let predictions = answer["predictions"].as_array().context("predictions")?;
        for ((i, t), p) in batch.iter().zip(predictions) {
            let index = *i + BOOTSTRAP as u64;
            let phase = if index < abrupt {
                0
            } else if index < gradual {
                1
            } else {
                2
            };
            let served_right = p["class"].as_u64() == Some(u64::from(t.fraud));
            let x = encoder.encode_json_frozen(&t.features)?;
            let frozen_right = frozen.predict_one(&x) == usize::from(t.fraud);
            let counts = &mut outcome.phases[phase];
            counts.0 += 1;
            counts.1 += u64::from(served_right);
            counts.2 += u64::from(frozen_right);
            let id = p["request_id"].as_str().context("request id")?.to_string();
            waiting.push_back((id, t.fraud));
        }
        sent += batch.len() as u64;
        let ready = waiting.len().saturating_sub(delay);
        if ready > 0 {
            let labels: Vec<Value> = waiting
                .drain(..ready)
                .map(|(id, fraud)| json!({"request_id": id, "label": fraud}))
                .collect();
            post("/v1/models/fraud/labels", Value::Array(labels).to_string())?;
        }
        if last_progress.elapsed() >= Duration::from_secs(2) || sent == events {
            last_progress = Instant::now();
            let concept = match stream.concept_at(sent + BOOTSTRAP as u64) {
                Concept::CardNotPresent => "card-not-present",
                Concept::CardTesting => "card testing",
                Concept::Skimming => "skimming",
            };
            println!(
                "[{:6.1}s] events {sent:>7} | pattern {concept:<16} | live accuracy {} | serving v{}",
                started.elapsed().as_secs_f64(),
                service.live_accuracy().map_or("  -  ".into(), |a| format!("{a:.3}")),
                service.champion_version(),
            );
            let _ = std::io::stdout().flush();
        }
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64(sent as f64 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    let labels: Vec<Value> = waiting
        .drain(..)
        .map(|(id, fraud)| json!({"request_id": id, "label": fraud}))
        .collect();
    if !labels.is_empty() {
        post("/v1/models/fraud/labels", Value::Array(labels).to_string())?;
    }
    Ok(outcome)
}

fn describe(event: &LifecycleEvent) -> String {
    match event {
        LifecycleEvent::DriftAlarm { label, statistic, threshold, window, detector } => format!(
            "DRIFT ALARM  {detector} on the error stream at label {label}: live error rate {statistic:.3}, change {window} labels ago ({detector} sensitivity {threshold})"
        ),
        LifecycleEvent::DataDrift { version, feature, test, statistic, threshold, window } => format!(
            "DATA DRIFT   {feature} in the last {window} requests to v{version}: {test} {statistic:.3} past {threshold}"
        ),
        LifecycleEvent::Retrain { version, examples, trigger } => {
            format!("RETRAIN      v{version} on {examples} examples ({trigger})")
        }
        LifecycleEvent::Promoted { version, previous, accuracy, previous_accuracy, drift_to_serving_ms } => format!(
            "PROMOTED     v{version} serves (held-out accuracy {accuracy:.3} vs {previous_accuracy:.3} for v{}){}",
            previous.unwrap_or_default(),
            drift_to_serving_ms.map_or(String::new(), |ms| format!(", {ms} ms from drift alarm to serving"))
        ),
        LifecycleEvent::TrialStarted { version, mode } => {
            format!("ON TRIAL     v{version} as a {mode}")
        }
        LifecycleEvent::Rejected { version, reason } => format!("REJECTED     v{version}: {reason}"),
        LifecycleEvent::RolledBack { from, to, reason } => format!("ROLLED BACK  v{from} -> v{to}: {reason}"),
    }
}

fn summarize(
    args: &DemoArgs,
    service: &ModelService,
    outcome: &Outcome,
    lake_rows: &BTreeMap<String, u64>,
    started: Instant,
) -> anyhow::Result<()> {
    let counters = service.counters();
    let drift_to_serving: Vec<u64> = service
        .history()
        .iter()
        .filter_map(|e| match e {
            LifecycleEvent::Promoted {
                drift_to_serving_ms: Some(ms),
                ..
            } => Some(*ms),
            _ => None,
        })
        .collect();
    let names = [
        "card-not-present (before the abrupt change)",
        "card testing (after it)",
        "gradual change to skimming",
    ];
    let phases: Vec<Value> = outcome
        .phases
        .iter()
        .zip(names)
        .map(|((n, served, frozen), name)| {
            let share = |k: u64| if *n > 0 { k as f64 / *n as f64 } else { 0.0 };
            json!({"phase": name, "events": n, "accuracy": share(*served), "frozen_accuracy": share(*frozen)})
        })
        .collect();
    let total: u64 = outcome.phases.iter().map(|p| p.0).sum();
    let served: u64 = outcome.phases.iter().map(|p| p.1).sum();
    let frozen: u64 = outcome.phases.iter().map(|p| p.2).sum();
    let seconds = started.elapsed().as_secs_f64();
    println!("\nsummary after {seconds:.1} s");
    println!("  events {} | drift alarms {} | retrains {} | promotions {} | rejections {} | rollbacks {}",
        args.events, counters.drift_alarms, counters.retrains, counters.promotions, counters.rejections, counters.rollbacks);
    println!("  drift alarm to new model serving (ms): {drift_to_serving:?}");
    for phase in &phases {
        println!(
            "  {:<46} accuracy {:.3} (the first model, never retrained: {:.3})",
            phase["phase"].as_str().unwrap_or_default(),
            phase["accuracy"].as_f64().unwrap_or_default(),
            phase["frozen_accuracy"].as_f64().unwrap_or_default()
        );
    }
    println!(
        "  labels joined {} | unmatched {} | predictions expired {} | lake rows: transactions {}, joined examples {}",
        counters.joined,
        counters.unmatched_labels,
        counters.expired_predictions,
        lake_rows.get("transactions").copied().unwrap_or(0),
        lake_rows.get("fraud_joined").copied().unwrap_or(0),
    );
    println!(
        "  serving v{} | registry and lake in {}",
        service.champion_version(),
        args.dir.display()
    );
    println!(
        "  replay this model's lifecycle over what it saw: driftline backtest --pipeline {} --model fraud fraud_joined --delay {}",
        args.dir.join("PIPELINE.toml").display(),
        args.label_delay
    );
    let summary = json!({
        "events": args.events,
        "seconds": seconds,
        "drift_alarms": counters.drift_alarms,
        "retrains": counters.retrains,
        "promotions": counters.promotions,
        "rejections": counters.rejections,
        "rollbacks": counters.rollbacks,
        "drift_to_serving_ms": drift_to_serving,
        "accuracy": served as f64 / total.max(1) as f64,
        "frozen_accuracy": frozen as f64 / total.max(1) as f64,
        "phases": phases,
        "labels_joined": counters.joined,
        "lake_rows": lake_rows.get("transactions").copied().unwrap_or(0),
        "joined_rows": lake_rows.get("fraud_joined").copied().unwrap_or(0),
        "champion": service.champion_version(),
        "dir": args.dir,
    });
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
