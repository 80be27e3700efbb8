//! The two encodings of the Kinesis API: JSON 1.1 (`application/x-amz-json-1.1`,
//! blobs as base64, timestamps as epoch seconds) and CBOR
//! (`application/x-amz-cbor-1.1`, blobs as byte strings, timestamps as epoch
//! milliseconds), which the Java SDK and the KPL send by default.
//!
//! Requests of either kind are read into one JSON tree (CBOR byte strings
//! become base64 text), so every operation is written once. Responses are built
//! as an [`Out`] tree that keeps blobs and timestamps typed until encoding.

use base64::Engine;
use serde_json::{Map, Value};

use super::error::ApiError;

pub const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";
pub const CBOR_CONTENT_TYPE: &str = "application/x-amz-cbor-1.1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Json,
    Cbor,
}

impl Protocol {
    pub fn content_type(self) -> &'static str {
        match self {
            Protocol::Json => JSON_CONTENT_TYPE,
            Protocol::Cbor => CBOR_CONTENT_TYPE,
        }
    }
}

/// A response value.
#[derive(Debug, Clone)]
pub enum Out {
    Bool(bool),
    Int(i64),
    Str(String),
    Blob(Vec<u8>),
    /// Milliseconds since the epoch.
    Time(i64),
    List(Vec<Out>),
    Map(Vec<(&'static str, Out)>),
    /// An explicit null (NextShardIterator at the end of a closed shard).
    Null,
}

impl Out {
    pub fn map() -> Vec<(&'static str, Out)> {
        Vec::new()
    }
}

pub fn decode_request(protocol: Protocol, body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let tree = if body.is_empty() {
        Value::Object(Map::new())
    } else {
        match protocol {
            Protocol::Json => serde_json::from_slice(body).map_err(|e| {
                ApiError::serialization(format!("request body is not valid JSON: {e}"))
            })?,
            Protocol::Cbor => {
                let value: ciborium::Value = ciborium::de::from_reader(body).map_err(|e| {
                    ApiError::serialization(format!("request body is not valid CBOR: {e}"))
                })?;
                cbor_to_json(value)?
            }
        }
    };
    match tree {
        Value::Object(map) => Ok(map),
        other => Err(ApiError::serialization(format!(
            "request body must be an object, not {}",
            kind(&other)
        ))),
    }
}

fn cbor_to_json(value: ciborium::Value) -> Result<Value, ApiError> {
    use ciborium::Value as C;
    Ok(match value {
        C::Null => Value::Null,
        C::Bool(b) => Value::Bool(b),
        C::Integer(i) => {
            let i: i128 = i.into();
            Value::from(
                i64::try_from(i)
                    .map_err(|_| ApiError::serialization("CBOR integer out of range"))?,
            )
        }
        C::Float(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        C::Text(t) => Value::String(t),
        C::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        // Tag 1 is an epoch timestamp; the operations read the number inside.
        C::Tag(_, inner) => cbor_to_json(*inner)?,
        C::Array(items) => Value::Array(
            items
                .into_iter()
                .map(cbor_to_json)
                .collect::<Result<_, _>>()?,
        ),
        C::Map(entries) => {
            let mut map = Map::new();
            for (key, value) in entries {
                let C::Text(key) = key else {
                    return Err(ApiError::serialization("CBOR map keys must be text"));
                };
                map.insert(key, cbor_to_json(value)?);
            }
            Value::Object(map)
        }
        _ => return Err(ApiError::serialization("unsupported CBOR value")),
    })
}

pub fn encode_response(protocol: Protocol, out: Out) -> Vec<u8> {
    match protocol {
        // Serialised straight from the tree: no intermediate JSON value.
        Protocol::Json => serde_json::to_vec(&out).unwrap_or_default(),
        Protocol::Cbor => {
            let mut bytes = Vec::new();
            // Writing to a Vec cannot fail.
            let _ = ciborium::ser::into_writer(&out_to_cbor(out), &mut bytes);
            bytes
        }
    }
}

pub fn encode_error(protocol: Protocol, error: &ApiError) -> Vec<u8> {
    let out = Out::Map(vec![
        ("__type", Out::Str(error.code.to_string())),
        ("message", Out::Str(error.message.clone())),
    ]);
    encode_response(protocol, out)
}

/// JSON 1.1 form: blobs as base64 text, timestamps as epoch seconds.
impl serde::Serialize for Out {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Out::Bool(b) => serializer.serialize_bool(*b),
            Out::Int(i) => serializer.serialize_i64(*i),
            Out::Str(s) => serializer.serialize_str(s),
            Out::Blob(b) => {
                serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
            }
            Out::Time(ms) => serializer.serialize_f64(*ms as f64 / 1000.0),
            Out::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Out::Map(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
            Out::Null => serializer.serialize_unit(),
        }
    }
}

fn out_to_cbor(out: Out) -> ciborium::Value {
    use ciborium::Value as C;
    match out {
        Out::Bool(b) => C::Bool(b),
        Out::Int(i) => C::Integer(i.into()),
        Out::Str(s) => C::Text(s),
        Out::Blob(b) => C::Bytes(b),
        Out::Time(ms) => C::Tag(1, Box::new(C::Integer(ms.into()))),
        Out::List(items) => C::Array(items.into_iter().map(out_to_cbor).collect()),
        Out::Map(entries) => C::Map(
            entries
                .into_iter()
                .map(|(k, v)| (C::Text(k.to_string()), out_to_cbor(v)))
                .collect(),
        ),
        Out::Null => C::Null,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Typed access to a request's members, with AWS's error for each way a member can be wrong.
pub struct Req<'a> {
    pub body: &'a Map<String, Value>,
    pub protocol: Protocol,
}

impl<'a> Req<'a> {
    pub fn new(body: &'a Map<String, Value>, protocol: Protocol) -> Req<'a> {
        Req { body, protocol }
    }

    fn member(&self, key: &str) -> Option<&'a Value> {
        self.body.get(key).filter(|v| !v.is_null())
    }

    pub fn str_opt(&self, key: &str) -> Result<Option<&'a str>, ApiError> {
        match self.member(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(ApiError::serialization(format!(
                "{key} must be a string, not {}",
                kind(other)
            ))),
        }
    }

    pub fn str_req(&self, key: &str) -> Result<&'a str, ApiError> {
        self.str_opt(key)?.ok_or_else(|| missing(key))
    }

    pub fn int_opt(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.member(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .map(Some)
                .ok_or_else(|| {
                    ApiError::serialization(format!("{key} must be an integer, not {n}"))
                }),
            Some(other) => Err(ApiError::serialization(format!(
                "{key} must be an integer, not {}",
                kind(other)
            ))),
        }
    }

    pub fn int_req(&self, key: &str) -> Result<i64, ApiError> {
        self.int_opt(key)?.ok_or_else(|| missing(key))
    }

    pub fn bool_opt(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.member(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(ApiError::serialization(format!(
                "{key} must be a boolean, not {}",
                kind(other)
            ))),
        }
    }

    /// A timestamp: epoch seconds in JSON, epoch milliseconds in CBOR. Returns milliseconds.
    pub fn timestamp_opt(&self, key: &str) -> Result<Option<i64>, ApiError> {
        let Some(value) = self.member(key) else {
            return Ok(None);
        };
        let Value::Number(n) = value else {
            return Err(ApiError::serialization(format!(
                "{key} must be a timestamp (epoch seconds), not {}",
                kind(value)
            )));
        };
        let ms = match (self.protocol, n.as_i64()) {
            (Protocol::Cbor, Some(ms)) => ms,
            _ => n.as_f64().map(|s| (s * 1000.0).round() as i64).unwrap_or(0),
        };
        Ok(Some(ms))
    }

    pub fn object_opt(&self, key: &str) -> Result<Option<Req<'a>>, ApiError> {
        match self.member(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Req::new(map, self.protocol))),
            Some(other) => Err(ApiError::serialization(format!(
                "{key} must be an object, not {}",
                kind(other)
            ))),
        }
    }

    pub fn list_opt(&self, key: &str) -> Result<Option<&'a Vec<Value>>, ApiError> {
        match self.member(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => Err(ApiError::serialization(format!(
                "{key} must be a list, not {}",
                kind(other)
            ))),
        }
    }

    /// A blob member: base64 text in JSON (CBOR byte strings arrive as base64 too).
    pub fn blob_req(&self, key: &str) -> Result<Vec<u8>, ApiError> {
        let text = self.str_req(key)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| ApiError::serialization(format!("{key} is not valid base64: {e}")))
    }

    pub fn string_map_opt(&self, key: &str) -> Result<Option<Vec<(String, String)>>, ApiError> {
        match self.member(key) {
            None => Ok(None),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    other => Err(ApiError::serialization(format!(
                        "{key}.{k} must be a string, not {}",
                        kind(other)
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(ApiError::serialization(format!(
                "{key} must be a map, not {}",
                kind(other)
            ))),
        }
    }
}

pub fn missing(key: &str) -> ApiError {
    ApiError::validation(format!(
        "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
        lower_first(key)
    ))
}

pub fn constraint(key: &str, value: &str, rule: &str) -> ApiError {
    ApiError::validation(format!(
        "1 validation error detected: Value '{value}' at '{}' failed to satisfy constraint: {rule}",
        lower_first(key)
    ))
}

fn lower_first(key: &str) -> String {
    let mut chars = key.chars();
    chars
        .next()
        .map(|c| c.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}
