//! Metrics as CloudWatch's embedded metric format: one JSON object per line,
//! whose `_aws` member tells CloudWatch Logs which of its fields are metrics
//! (with their unit) and which are dimensions. Printed to standard output, a
//! Lambda function's or an ECS task's log becomes metrics without a call to
//! PutMetricData. Format: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>

use serde_json::{json, Map, Value};

/// The namespace driftline's metrics go to.
pub const NAMESPACE: &str = "driftline";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    None,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::None => "None",
        }
    }
}

/// One EMF line: the metrics (name, value, unit) under one set of dimensions.
/// Non-finite values are left out (EMF has no NaN).
pub fn line(
    timestamp_ms: i64,
    dimensions: &[(&str, &str)],
    metrics: &[(&str, f64, Unit)],
) -> String {
    let metrics: Vec<&(&str, f64, Unit)> = metrics.iter().filter(|m| m.1.is_finite()).collect();
    let mut object = Map::new();
    object.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions.iter().map(|(k, _)| *k).collect::<Vec<_>>()],
                "Metrics": metrics
                    .iter()
                    .map(|(name, _, unit)| json!({"Name": name, "Unit": unit.name()}))
                    .collect::<Vec<_>>(),
            }],
        }),
    );
    for (key, value) in dimensions {
        object.insert((*key).into(), Value::String((*value).into()));
    }
    for (name, value, _) in metrics {
        object.insert((*name).into(), json!(value));
    }
    Value::Object(object).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_the_embedded_metric_format() {
        let text = line(
            1_795_600_000_000,
            &[("Pipeline", "quickstart"), ("Stage", "events")],
            &[
                ("RecordsIn", 42.0, Unit::Count),
                ("Lag", f64::NAN, Unit::Count),
            ],
        );
        // golden: the shape CloudWatch Logs extracts metrics from
        assert_eq!(
            text,
            r#"{"Pipeline":"quickstart","RecordsIn":42.0,"Stage":"events","_aws":{"CloudWatchMetrics":[{"Dimensions":[["Pipeline","Stage"]],"Metrics":[{"Name":"RecordsIn","Unit":"Count"}],"Namespace":"driftline"}],"Timestamp":1795600000000}}"#
        );
    }
}
