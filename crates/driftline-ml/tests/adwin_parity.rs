//! ADWIN detects at the same indices as River's ADWIN (delta 0.002, clock 32)
//! on the reference error streams in `shared/bench/peers/detector/`.

use std::io::Read;

use driftline_ml::drift::{Adwin, DriftDetector, DriftState};

fn golden(name: &str) -> String {
    format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn error_stream(name: &str) -> Vec<f64> {
    let file = std::fs::File::open(golden(name)).expect("golden file");
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .expect("gunzip");
    text.lines()
        .map(|l| l.trim().parse::<f64>().expect("0 or 1"))
        .collect()
}

fn detections(values: &[f64]) -> Vec<usize> {
    let mut adwin = Adwin::default();
    values
        .iter()
        .enumerate()
        .filter(|(_, v)| adwin.update(**v) == DriftState::Drift)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn adwin_matches_river_on_the_adapting_logistic_regression_errors() {
    let errors = error_stream("sea_abrupt_river_lr_errors.txt.gz");
    assert_eq!(errors.len(), 100_000);
    assert_eq!(detections(&errors), vec![75_167]);
}

#[test]
fn adwin_matches_river_on_the_frozen_logistic_regression_errors() {
    let errors = error_stream("sea_abrupt_frozen_lr_errors.txt.gz");
    assert_eq!(detections(&errors), vec![25_759, 61_567, 76_991]);
}

/// The Bernoulli stream of the recipe: SplitMix64 bits, rate 0.2 then 0.3.
fn bernoulli_from_recipe() -> Vec<f64> {
    let recipe: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(golden("bernoulli_1m_recipe.json")).expect("recipe"),
    )
    .expect("json");
    let seed = recipe["seed"].as_u64().expect("seed");
    let n = recipe["n"].as_u64().expect("n") as usize;
    let change_at = recipe["change_at"].as_u64().expect("change_at") as usize;
    let (before, after) = (
        recipe["p_before"].as_f64().expect("p"),
        recipe["p_after"].as_f64().expect("p"),
    );
    let mut state = seed;
    let bits: Vec<f64> = (0..n)
        .map(|i| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let u = (z >> 11) as f64 * 2f64.powi(-53);
            let p = if i < change_at { before } else { after };
            f64::from(u8::from(u < p))
        })
        .collect();
    let first_64: String = bits[..64]
        .iter()
        .map(|b| if *b > 0.5 { '1' } else { '0' })
        .collect();
    assert_eq!(first_64, recipe["first_64_bits"].as_str().expect("bits"));
    let ones_before = bits[..change_at].iter().sum::<f64>() as u64;
    assert_eq!(ones_before, recipe["ones_before"].as_u64().expect("count"));
    bits
}

#[test]
fn adwin_matches_river_on_the_bernoulli_stream() {
    let bits = bernoulli_from_recipe();
    assert_eq!(detections(&bits), vec![500_383]);
}
