//! Transforms in jq, the language users already write for JSON, through the
//! `jaq` crates (a maintained Rust implementation of jq; a few seconds of
//! build time). A processor's `transform` runs on each event before the
//! schema is applied: it can rename, map and derive fields, and filter with
//! `select` (no output drops the event, counted as filtered); each output
//! becomes a row. A runtime error fails the record with jq's message.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{data, unwrap_valr, Compiler, Ctx, Vars};
use jaq_json::Val;

pub struct JqTransform {
    filter: jaq_core::Filter<data::JustLut<Val>>,
}

impl JqTransform {
    /// Compiles a jq program, or says why it cannot be.
    pub fn compile(code: &str) -> Result<JqTransform, String> {
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        let funs = jaq_core::funs()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs());
        let arena = Arena::default();
        let modules = Loader::new(defs)
            .load(&arena, File { code, path: () })
            .map_err(|errors| {
                let reasons: Vec<String> = errors.iter().map(|(_, e)| format!("{e:?}")).collect();
                format!("cannot parse the jq program: {}", reasons.join("; "))
            })?;
        let filter = Compiler::default()
            .with_funs(funs)
            .compile(modules)
            .map_err(|errors| {
                let undefined: Vec<String> = errors
                    .iter()
                    .flat_map(|(_, e)| e.iter().map(|(name, _)| name.to_string()))
                    .collect();
                format!(
                    "the jq program uses undefined names: {}",
                    undefined.join(", ")
                )
            })?;
        Ok(JqTransform { filter })
    }

    /// Runs the program on one JSON document; its outputs as JSON text.
    pub fn apply(&self, json: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        let input = jaq_json::read::parse_single(json).map_err(|e| format!("not JSON: {e}"))?;
        let ctx = Ctx::<data::JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        self.filter
            .id
            .run((ctx, input))
            .map(unwrap_valr)
            .map(|output| match output {
                Ok(value) => Ok(value.to_string().into_bytes()),
                Err(error) => Err(format!("transform failed: {error}")),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(code: &str, input: &str) -> Result<Vec<String>, String> {
        let transform = JqTransform::compile(code)?;
        Ok(transform
            .apply(input.as_bytes())?
            .into_iter()
            .map(|o| String::from_utf8(o).expect("utf-8"))
            .collect())
    }

    #[test]
    fn renames_derives_and_filters() {
        let code = r#"select(.amount > 10) | {id, user: .customer, amount, big: (.amount >= 100)}"#;
        assert_eq!(
            outputs(code, r#"{"id":"a","customer":"u1","amount":150,"pad":"x"}"#),
            Ok(vec![
                r#"{"id":"a","user":"u1","amount":150,"big":true}"#.to_string()
            ])
        );
        assert_eq!(
            outputs(code, r#"{"id":"b","customer":"u1","amount":5}"#),
            Ok(vec![])
        );
    }

    #[test]
    fn errors_say_what_went_wrong() {
        let error = JqTransform::compile(".a | nosuchfunction(1)")
            .err()
            .expect("undefined");
        assert!(error.contains("nosuchfunction"), "{error}");
        assert!(JqTransform::compile(".a | (").is_err());
        let error = outputs(".user | ascii_upcase", r#"{"user":1}"#).expect_err("runtime error");
        assert!(error.starts_with("transform failed"), "{error}");
        assert!(outputs(".", "{oops")
            .expect_err("not json")
            .starts_with("not JSON"));
    }
}
