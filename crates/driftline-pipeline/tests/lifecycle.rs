//! The model lifecycle on the drifting fraud stream: a drift alarm leads to a
//! retrain, a gate and a promotion with its lineage in the registry; a model
//! made worse on purpose is rolled back; a challenger that does not clear the
//! gate never serves; predictions go to the stream.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use driftline_lake::{Lake, Registry, Status, TrainingData, VersionRecord};
use driftline_log::{Durability, LogConfig, LogStore, StreamSpec};
use driftline_ml::features::Encoder;
use driftline_ml::learn::{artifact, classifier_by_name};
use driftline_ml::synth::{FraudStream, FRAUD_FEATURES};
use driftline_pipeline::lifecycle::{LifecycleConfig, LifecycleEvent, ModelService};

/// The tests train models on a bounded pool shared by the process and time
/// their retrains against a stream they drive: one at a time, so that they
/// do not starve each other's training.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn encoder() -> Encoder {
    Encoder::numeric(&FRAUD_FEATURES)
}

fn examples(stream: &mut FraudStream, n: usize) -> Vec<(Vec<f64>, usize)> {
    let mut encoder = encoder();
    stream
        .take(n)
        .map(|t| {
            (
                encoder.encode_json(&t.features).expect("encode"),
                usize::from(t.fraud),
            )
        })
        .collect()
}

/// Predicts `n` events and labels each `delay` events later.
fn drive(service: &Arc<ModelService>, stream: &mut FraudStream, n: usize, delay: usize) {
    let mut waiting: VecDeque<(String, usize)> = VecDeque::new();
    for transaction in stream.take(n) {
        let prediction = service.predict(&transaction.features).expect("predict");
        waiting.push_back((prediction.request_id, usize::from(transaction.fraud)));
        if waiting.len() > delay {
            let (id, label) = waiting.pop_front().expect("waiting");
            service.label(&id, label).expect("label");
        }
    }
    for (id, label) in waiting {
        service.label(&id, label).expect("label");
    }
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A service bootstrapped on the first `bootstrap` events of `stream`, with a
/// registry in a fresh lake; the runtime and the directory live as long as it.
struct Setup {
    runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    registry: Registry,
    service: Arc<ModelService>,
}

fn setup(config: &LifecycleConfig, stream: &mut FraudStream, bootstrap: usize) -> Setup {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let dir = tempfile::tempdir().expect("dir");
    let lake = Lake::open(dir.path().join("lake").to_str().expect("utf-8")).expect("lake");
    let registry = Registry::new(lake, "fraud").expect("registry");
    let service = runtime.block_on(async {
        let first =
            ModelService::bootstrap(&registry, config, encoder(), 2, examples(stream, bootstrap))
                .await
                .expect("bootstrap");
        ModelService::new("fraud", config.clone(), 2, registry.clone(), first, None)
    });
    Setup {
        runtime,
        dir,
        registry,
        service,
    }
}

#[test]
fn drift_leads_to_a_retrain_a_gate_and_a_promotion_with_lineage() {
    let _serial = serial();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let dir = tempfile::tempdir().expect("dir");
    let lake = Lake::open(dir.path().join("lake").to_str().expect("utf-8")).expect("lake");
    let registry = Registry::new(lake, "fraud").expect("registry");
    let store = LogStore::open(
        &dir.path().join("data"),
        LogConfig {
            durability: Durability::Os,
            ..LogConfig::default()
        },
    )
    .expect("store");
    let log = store
        .create_stream(
            StreamSpec {
                name: "predictions".into(),
                shard_count: 1,
                ..StreamSpec::default()
            },
            0,
        )
        .expect("stream");
    let config = LifecycleConfig {
        cooldown: Duration::from_millis(200),
        ..LifecycleConfig::default()
    };
    let mut stream = FraudStream::new(3, 30_000);
    let service = runtime.block_on(async {
        let first = ModelService::bootstrap(
            &registry,
            &config,
            encoder(),
            2,
            examples(&mut stream, 2000),
        )
        .await
        .expect("bootstrap");
        ModelService::new(
            "fraud",
            config.clone(),
            2,
            registry.clone(),
            first,
            Some(log.clone()),
        )
    });
    assert_eq!(service.champion_version(), 1);
    // up to the abrupt change at 10,000, then the card-testing pattern
    drive(&service, &mut stream, 8000, 50);
    let before = service.live_accuracy().expect("accuracy");
    drive(&service, &mut stream, 6000, 50);
    wait_until("a promotion", || service.counters().promotions >= 1);
    let history = service.history();
    let alarm = history
        .iter()
        .position(|e| matches!(e, LifecycleEvent::DriftAlarm { .. }))
        .expect("an alarm");
    let promoted = history
        .iter()
        .position(|e| matches!(e, LifecycleEvent::Promoted { .. }))
        .expect("a promotion");
    assert!(alarm < promoted, "{history:?}");
    let LifecycleEvent::Promoted {
        version,
        previous,
        accuracy,
        previous_accuracy,
        drift_to_serving_ms,
    } = history[promoted].clone()
    else {
        unreachable!()
    };
    assert!(
        accuracy > previous_accuracy,
        "{accuracy} vs {previous_accuracy}"
    );
    assert!(drift_to_serving_ms.is_some());
    assert_eq!(previous, Some(1));
    // later retrains on the growing window since the drift point may replace it
    assert!(service.champion_version() >= version);
    // the champion serves and does well on the new pattern (after the
    // retrains on the growing window since the drift point, which wait for
    // the process's one training slot: slower on a loaded machine)
    drive(&service, &mut stream, 3000, 50);
    drive_until(&service, &mut stream, "live accuracy over 0.85", |s| {
        s.live_accuracy().is_some_and(|a| a > 0.85)
    });
    let after = service.live_accuracy().expect("accuracy");
    assert!(
        after > before - 0.15,
        "live accuracy {after} (before the change {before})"
    );
    // lineage in the registry, read by another handle
    let states = runtime.block_on(registry.versions()).expect("versions");
    let promoted_state = states
        .iter()
        .find(|s| s.record.version == version)
        .expect("version");
    assert_eq!(promoted_state.record.parent, previous);
    assert!(
        promoted_state.record.training.window.starts_with("drift"),
        "{:?}",
        promoted_state.record.training
    );
    assert!(
        promoted_state.decisions[0].reason.contains("gain"),
        "{:?}",
        promoted_state.decisions
    );
    let champion = states
        .iter()
        .find(|s| s.status == Status::Champion)
        .expect("a champion");
    assert_eq!(champion.record.version, service.champion_version());
    // 17,000 events, and more where the accuracy took longer to recover
    let counters = service.counters();
    assert!(counters.predictions >= 17_000, "{counters:?}");
    assert_eq!(counters.joined, counters.predictions);
    // every prediction reached the stream
    let predictions = counters.predictions as usize;
    wait_until("the prediction log", || {
        log.read_all().map(|r| r.len()).unwrap_or(0) == predictions
    });
}

#[test]
fn a_model_made_worse_on_purpose_is_rolled_back_and_a_weak_challenger_never_serves() {
    let _serial = serial();
    let config = LifecycleConfig {
        rollback_after: 300,
        retrain_every_labels: 1000,
        min_gain: 0.5, // no challenger can gain 50 points: every retrain is rejected
        ..LifecycleConfig::default()
    };
    let mut stream = FraudStream::new(5, 300_000);
    let Setup {
        runtime,
        dir: _dir,
        registry,
        service,
    } = setup(&config, &mut stream, 2000);
    // a model trained on flipped labels, registered and promoted by hand
    let bad = runtime.block_on(async {
        let mut model = classifier_by_name("gbt", FRAUD_FEATURES.len(), 2, 1).expect("gbt");
        let (xs, ys): (Vec<Vec<f64>>, Vec<usize>) = examples(&mut stream, 2000)
            .into_iter()
            .map(|(x, y)| (x, 1 - y))
            .unzip();
        model.fit(&xs, &ys);
        let record = VersionRecord {
            version: 0,
            parent: Some(1),
            learner: "gbt".into(),
            parameters: serde_json::json!({}),
            training: TrainingData {
                window: "flipped labels, on purpose".into(),
                ..TrainingData::default()
            },
            metrics: Default::default(),
            created_ms: 0,
            artifact: String::new(),
        };
        let record = registry
            .register(record, artifact::save(model.as_ref(), Some(&encoder())))
            .await
            .expect("register");
        service
            .promote(record.version, "made worse on purpose", None)
            .await
            .expect("promote");
        record.version
    });
    assert_eq!(service.champion_version(), bad);
    drive(&service, &mut stream, 400, 0);
    assert_eq!(
        service.champion_version(),
        1,
        "rolled back to the predecessor"
    );
    assert!(service
        .history()
        .iter()
        .any(|e| matches!(e, LifecycleEvent::RolledBack { from, to: 1, .. } if *from == bad)));
    // scheduled retrains happen, are rejected by the gate, and never serve
    drive(&service, &mut stream, 2500, 0);
    wait_until("a rejection", || service.counters().rejections >= 1);
    assert_eq!(service.champion_version(), 1);
    let states = runtime.block_on(registry.versions()).expect("versions");
    let statuses: Vec<(u64, Status)> = states
        .iter()
        .map(|s| (s.record.version, s.status))
        .collect();
    assert_eq!(statuses[0], (1, Status::Champion), "{statuses:?}");
    assert_eq!(statuses[1], (bad, Status::Archived), "{statuses:?}");
    assert!(
        statuses[2..].iter().all(|(_, s)| *s == Status::Rejected),
        "{statuses:?}"
    );
}

#[test]
fn no_prediction_fails_during_swaps_under_concurrent_load() {
    let _serial = serial();
    let config = LifecycleConfig {
        retrain_every_labels: 500,
        min_gain: -1.0,
        rollback_after: usize::MAX,
        ..LifecycleConfig::default()
    };
    let mut stream = FraudStream::new(9, 40_000);
    let Setup {
        runtime: _runtime,
        dir: _dir,
        registry: _registry,
        service,
    } = setup(&config, &mut stream, 1000);
    let events: Vec<serde_json::Value> = FraudStream::new(10, 1000)
        .take(1000)
        .map(|t| t.features)
        .collect();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..3)
        .map(|_| {
            let (service, events, done) = (service.clone(), events.clone(), done.clone());
            std::thread::spawn(move || {
                let (mut served, mut failed) = (0usize, 0usize);
                let mut versions = std::collections::BTreeSet::new();
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    for event in &events {
                        match service.predict(event) {
                            Ok(p) => {
                                served += 1;
                                versions.insert(p.version);
                            }
                            Err(_) => failed += 1,
                        }
                    }
                }
                (served, failed, versions)
            })
        })
        .collect();
    // labels keep coming until the scheduled retrains have swapped the model a few times
    let deadline = Instant::now() + Duration::from_secs(120);
    while service.counters().promotions < 3 {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for several promotions"
        );
        drive(&service, &mut stream, 500, 0);
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut seen = std::collections::BTreeSet::new();
    for worker in load {
        let (served, failed, versions) = worker.join().expect("load thread");
        assert!(served > 0);
        assert_eq!(failed, 0, "predictions failed during swaps");
        seen.extend(versions);
    }
    assert!(seen.len() >= 2, "the load saw the swaps: {seen:?}");
}

#[test]
fn a_shifted_feature_raises_a_data_drift_alarm_naming_it() {
    let _serial = serial();
    let config = LifecycleConfig::default();
    let mut stream = FraudStream::new(11, 100_000);
    let Setup {
        runtime: _runtime,
        dir: _dir,
        registry: _registry,
        service,
    } = setup(&config, &mut stream, 3000);
    // traffic like the training data: no alarm
    for t in stream.by_ref().take(3000) {
        service.predict(&t.features).expect("predict");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        service.counters().data_drift_alarms,
        0,
        "{:?}",
        service.history()
    );
    // then amounts in another currency, ten times larger, until the monitor
    // (which looks at most once a second) has seen them
    let deadline = Instant::now() + Duration::from_secs(60);
    while service.counters().data_drift_alarms == 0 {
        assert!(
            Instant::now() < deadline,
            "no data drift alarm: {:?}",
            service.history()
        );
        for t in stream.by_ref().take(1000) {
            let mut features = t.features.clone();
            let amount = features["amount"].as_f64().expect("amount");
            features["amount"] = serde_json::json!(amount * 10.0);
            service.predict(&features).expect("predict");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let drifted: Vec<String> = service
        .history()
        .iter()
        .filter_map(|e| match e {
            LifecycleEvent::DataDrift {
                feature,
                statistic,
                threshold,
                ..
            } => {
                assert!(statistic > threshold);
                Some(feature.clone())
            }
            _ => None,
        })
        .collect();
    assert!(drifted.contains(&"amount".to_string()), "{drifted:?}");
    assert!(!drifted.contains(&"hour".to_string()), "{drifted:?}");
}

/// A data-drift alarm retrains the model only when its monitors say data
/// alarms retrain it (concept alarms are off here, so no other trigger).
#[test]
fn a_data_drift_alarm_retrains_only_when_the_model_says_so() {
    let _serial = serial();
    for retrain_on_data in [false, true] {
        let config = LifecycleConfig {
            retrain_on_drift: false,
            retrain_on_data,
            min_train: 200,
            data_check_every: 200,
            data_window: 400,
            data_test: driftline_ml::drift::monitor::DataTest::Ks,
            data_threshold: 0.001,
            ..LifecycleConfig::default()
        };
        let mut stream = FraudStream::new(12, 100_000);
        let Setup {
            runtime: _runtime,
            dir: _dir,
            registry: _registry,
            service,
        } = setup(&config, &mut stream, 3000);
        // labelled traffic whose amounts are ten times larger
        let deadline = Instant::now() + Duration::from_secs(60);
        while service.counters().data_drift_alarms == 0 || service.counters().joined < 1000 {
            assert!(
                Instant::now() < deadline,
                "no data drift alarm: {:?}",
                service.history()
            );
            for t in stream.by_ref().take(200) {
                let mut features = t.features.clone();
                let amount = features["amount"].as_f64().expect("amount");
                features["amount"] = serde_json::json!(amount * 10.0);
                let prediction = service.predict(&features).expect("predict");
                service
                    .label(&prediction.request_id, usize::from(t.fraud))
                    .expect("label");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let retrained_on_data = || {
            service.history().iter().any(|e| {
                matches!(e, LifecycleEvent::Retrain { trigger, .. } if trigger.starts_with("data drift on"))
            })
        };
        if retrain_on_data {
            wait_until("a retrain on the data alarm", retrained_on_data);
        } else {
            std::thread::sleep(Duration::from_millis(500));
            assert!(!retrained_on_data(), "{:?}", service.history());
            assert_eq!(service.counters().retrains, 0, "{:?}", service.history());
        }
    }
}

/// Drives labelled traffic in chunks until `done` (or panics after a while).
fn drive_until(
    service: &Arc<ModelService>,
    stream: &mut FraudStream,
    what: &str,
    done: impl Fn(&ModelService) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done(service) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:#?}",
            service.history()
        );
        drive(service, stream, 200, 20);
    }
}

#[test]
fn a_shadow_challenger_is_scored_on_live_traffic_before_it_serves_and_a_canary_answers_its_share() {
    let _serial = serial();
    use driftline_pipeline::lifecycle::Promotion;
    for promotion in [Promotion::Shadow, Promotion::Canary(0.25)] {
        let config = LifecycleConfig {
            promotion,
            trial_labels: 300,
            ..LifecycleConfig::default()
        };
        let mut stream = FraudStream::new(3, 30_000);
        let Setup {
            runtime,
            dir: _dir,
            registry,
            service,
        } = setup(&config, &mut stream, 2000);
        drive_until(&service, &mut stream, "a trial", |s| {
            s.history()
                .iter()
                .any(|e| matches!(e, LifecycleEvent::TrialStarted { .. }))
        });
        let Some(LifecycleEvent::TrialStarted { version, mode }) = service
            .history()
            .into_iter()
            .find(|e| matches!(e, LifecycleEvent::TrialStarted { .. }))
        else {
            unreachable!()
        };
        assert_eq!(service.champion_version(), 1, "on trial, not serving yet");
        if let Promotion::Canary(share) = promotion {
            assert!(mode.starts_with("canary"), "{mode}");
            // the canary answers about its share of the requests while on trial
            let answered = FraudStream::new(99, 2000)
                .take(2000)
                .filter(|t| service.predict(&t.features).expect("predict").version == version)
                .count();
            let seen = answered as f64 / 2000.0;
            assert!(
                (share - 0.08..share + 0.08).contains(&seen),
                "canary answered {seen}"
            );
        } else {
            assert_eq!(mode, "shadow");
            // a shadow answers nothing
            assert!(FraudStream::new(99, 500).take(500).all(|t| service
                .predict(&t.features)
                .expect("predict")
                .version
                == 1));
        }
        drive_until(&service, &mut stream, "the end of the trial", |s| {
            let c = s.counters();
            c.promotions + c.rejections >= 1
        });
        // the decision is written to the registry in the background
        let deadline = Instant::now() + Duration::from_secs(30);
        let tried = loop {
            let states = runtime.block_on(registry.versions()).expect("versions");
            let tried = states
                .into_iter()
                .find(|s| s.record.version == version)
                .expect("version");
            if matches!(tried.status, Status::Champion | Status::Rejected)
                || Instant::now() > deadline
            {
                break tried;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let expected = if matches!(promotion, Promotion::Shadow) {
            Status::Shadow
        } else {
            Status::Canary
        };
        assert_eq!(tried.decisions[0].status, expected, "{:?}", tried.decisions);
        assert!(
            matches!(tried.status, Status::Champion | Status::Rejected),
            "{:?}",
            tried.status
        );
        let last = tried.decisions.last().expect("decision");
        assert!(last.reason.contains("over 300 labels"), "{}", last.reason);
    }
}

/// Retrains read the joined examples back from the lake (and the newest from
/// the joined stream) and the registry names the objects and stream positions.
#[test]
fn retrains_read_the_lake_and_record_what_they_read() {
    let _serial = serial();
    use driftline_lake::Compression;
    use driftline_pipeline::mapping::Delivery;
    use driftline_pipeline::training::{joined_processor, joined_schema, TrainingSource};
    use driftline_pipeline::{run_mapping, Mapping, MappingStats, PipelineConfig};

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let dir = tempfile::tempdir().expect("dir");
    let lake = Lake::open(dir.path().join("lake").to_str().expect("utf-8")).expect("lake");
    let registry = Registry::new(lake.clone(), "fraud").expect("registry");
    let store = LogStore::open(
        &dir.path().join("data"),
        LogConfig {
            durability: Durability::Os,
            ..LogConfig::default()
        },
    )
    .expect("store");
    let joined = store
        .create_stream(
            StreamSpec {
                name: "joined".into(),
                shard_count: 2,
                ..StreamSpec::default()
            },
            0,
        )
        .expect("stream");
    let pipeline = PipelineConfig::parse(
        r#"
[[stream]]
name = "joined"
shards = 2
[[schema]]
name = "unused"
fields = [{ name = "id", type = "string" }]
[[processor]]
name = "joined"
stream = "joined"
schema = "unused"
maximum_batching_window_ms = 50
[lake]
"#,
        std::path::Path::new("test"),
    )
    .expect("pipeline");
    let features: Vec<String> = FRAUD_FEATURES.iter().map(|f| f.to_string()).collect();
    let config = LifecycleConfig {
        cooldown: Duration::from_millis(200),
        ..LifecycleConfig::default()
    };
    let mut stream = FraudStream::new(3, 30_000);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let (service, delivery) = runtime.block_on(async {
        let first = ModelService::bootstrap(
            &registry,
            &config,
            encoder(),
            2,
            examples(&mut stream, 2000),
        )
        .await
        .expect("bootstrap");
        let service = ModelService::new("fraud", config.clone(), 2, registry.clone(), first, None);
        service.log_joined_to(joined.clone());
        service.train_from(TrainingSource::new(
            lake.clone(),
            "fraud_joined",
            joined.clone(),
        ));
        let mapping = Mapping {
            stream: joined.clone(),
            dead_letters: None,
            processor: Arc::new(joined_processor(&features).expect("processor")),
            config: pipeline.processors[0].clone(),
            delivery: Delivery {
                lake: lake.clone(),
                table: "fraud_joined".into(),
                schema: joined_schema(&features).expect("schema"),
                compression: Compression::Zstd,
                max_buffer: Duration::from_millis(300),
                max_buffer_bytes: 1 << 20,
                bus: None,
            },
            stats: Arc::new(MappingStats::default()),
        };
        (service, tokio::spawn(run_mapping(mapping, stop_rx)))
    });
    drive(&service, &mut stream, 8000, 50);
    // let the delivery catch up, so that part of the training set is in the lake
    std::thread::sleep(Duration::from_millis(800));
    drive(&service, &mut stream, 6000, 50);
    wait_until("a promotion", || service.counters().promotions >= 1);
    stop.send(true).expect("stop");
    runtime.block_on(delivery).expect("join").expect("delivery");

    let states = runtime.block_on(registry.versions()).expect("versions");
    let retrained = states
        .iter()
        .find(|s| s.record.version > 1)
        .expect("a retrained version");
    let training = &retrained.record.training;
    // started by the drift (at the alarm, or on the examples since it when the
    // lake had too few at the alarm, as on a loaded machine)
    assert!(training.window.contains("drift"), "{training:?}");
    assert!(training.window.contains("lake objects"), "{training:?}");
    assert!(
        training.examples >= config.min_train * 3 / 4,
        "{training:?}"
    );
    // every object named is in the lake, under the joined table
    assert!(!training.lake_objects.is_empty(), "{training:?}");
    for object in &training.lake_objects {
        assert!(object.starts_with("fraud_joined/"), "{object}");
        let bytes = runtime.block_on(lake.read(object)).expect("read");
        assert!(bytes.is_some(), "{object} is not in the lake");
    }
    // every joined example is read once, from the lake or the stream's tail;
    // a window by time keeps only the recent ones
    let source = TrainingSource::new(lake.clone(), "fraud_joined", joined.clone());
    let all = runtime
        .block_on(source.newest(1_000_000, None, &features))
        .expect("all");
    assert_eq!(all.examples.len(), 14_000, "{}", all.data.window);
    let future = driftline_log::now_ms() + 60_000;
    let none = runtime
        .block_on(source.newest(1_000_000, Some(future), &features))
        .expect("none");
    assert_eq!(none.examples.len(), 0);
    // positions per shard, first at or before last, as decimal sequence numbers
    assert!(!training.stream_positions.is_empty(), "{training:?}");
    for (shard, (first, last)) in &training.stream_positions {
        assert!(shard.starts_with("shardId-"), "{shard}");
        let (first, last): (u128, u128) =
            (first.parse().expect("first"), last.parse().expect("last"));
        assert!(first <= last, "{shard}: {first} > {last}");
    }
}

#[test]
fn a_schedule_retrains_when_labels_are_new_and_drift_alone_does_not_when_switched_off() {
    let _serial = serial();
    let config = LifecycleConfig {
        retrain_on_drift: false,
        retrain_every: Some(Duration::from_millis(300)),
        ..LifecycleConfig::default()
    };
    let mut stream = FraudStream::new(5, 12_000);
    let setup = setup(&config, &mut stream, 2000);
    let service = &setup.service;
    // through the abrupt change at 4,000
    drive(service, &mut stream, 4000, 20);
    wait_until("a scheduled retrain", || service.counters().retrains >= 1);
    std::thread::sleep(Duration::from_millis(700));
    let triggers: Vec<String> = service
        .history()
        .into_iter()
        .filter_map(|e| match e {
            LifecycleEvent::Retrain { trigger, .. } => Some(trigger),
            _ => None,
        })
        .collect();
    assert!(!triggers.is_empty());
    assert!(triggers.iter().all(|t| t == "every 0.3 s"), "{triggers:?}");
    // no new labels, no new retrains
    let retrains = service.counters().retrains;
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(service.counters().retrains, retrains);
}

#[test]
fn the_data_drift_reference_is_kept_beside_its_version() {
    let _serial = serial();
    let mut stream = FraudStream::new(9, 10_000);
    let setup = setup(&LifecycleConfig::default(), &mut stream, 1000);
    // a restarted server loads the champion with its reference
    let served = setup
        .runtime
        .block_on(ModelService::load_champion(&setup.registry))
        .expect("load")
        .expect("a champion");
    let reference = served.reference.expect("the stored reference");
    assert_eq!(reference.columns.len(), FRAUD_FEATURES.len());
    assert_eq!(reference.scores.len(), 1000);
    assert!(reference.scores.windows(2).all(|w| w[0] <= w[1]), "sorted");
}

#[test]
fn an_online_champion_keeps_learning_between_retrains() {
    let _serial = serial();
    // no retrains at all: whatever the model learns after the change, it learns online
    let config = LifecycleConfig {
        learner: "lr".into(),
        retrain_on_drift: false,
        online_publish_every: Some(100),
        ..LifecycleConfig::default()
    };
    let mut stream = FraudStream::new(21, 12_000);
    let setup = setup(&config, &mut stream, 2000);
    let service = &setup.service;
    let first = setup
        .runtime
        .block_on(ModelService::load_champion(&setup.registry))
        .expect("load")
        .expect("v1");
    // past the abrupt change at 4,000 and well into the new pattern
    drive(service, &mut stream, 6000, 20);
    wait_until("the online learner", || {
        service.counters().online_updates >= 20
    });
    let counters = service.counters();
    assert_eq!(counters.retrains, 0);
    assert_eq!(service.champion_version(), 1, "the same version learns on");
    // on the next events, the model that learned on beats the one it started as
    let events: Vec<_> = stream.by_ref().take(2000).collect();
    let correct = |predict: &dyn Fn(&serde_json::Value) -> usize| {
        events
            .iter()
            .filter(|t| predict(&t.features) == usize::from(t.fraud))
            .count()
    };
    let learned = correct(&|f| service.predict(f).expect("predict").class);
    let frozen = correct(&|f| {
        let x = first.encoder.encode_json_frozen(f).expect("encode");
        first.model.predict_one(&x)
    });
    assert!(
        learned > frozen,
        "online {learned} vs frozen {frozen} of 2000 ({counters:?})"
    );
}
