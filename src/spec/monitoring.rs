//! The `monitoring` section (RealtimeAPIs only): kept in the spec, not acted upon yet.

use super::problem::{quote, Problem};
use super::schema;
use super::section::Section;
use super::suggest::nearest;
use super::types::{ModelType, Monitoring};

/// `None` when the section is absent or empty.
pub(crate) fn monitoring(api: &Section) -> Result<Option<Monitoring>, Problem> {
    if !api.has("monitoring") {
        return Ok(None);
    }
    let sec = api.section("monitoring", schema::MONITORING)?;
    let model_type = sec.parsed(
        "model_type",
        "\"classification\" or \"regression\"",
        |text| match text {
            "classification" => Ok(ModelType::Classification),
            "regression" => Ok(ModelType::Regression),
            other => {
                let hint = nearest(other, &["classification", "regression"])
                    .map(|near| format!("; did you mean \"{near}\"?"))
                    .unwrap_or_default();
                Err(format!(
                    "must be \"classification\" or \"regression\", got {}{hint}",
                    quote(other)
                ))
            }
        },
    )?;
    let key = sec.text("key")?.map(str::to_string);
    Ok(Some(Monitoring { model_type, key }))
}

#[cfg(test)]
mod tests {
    use super::super::load::load;
    use super::*;

    fn parse(yaml: &str) -> Result<Option<Monitoring>, Problem> {
        let node = load(yaml).unwrap().unwrap();
        let api = Section::new(&node, "", schema::API).unwrap();
        monitoring(&api)
    }

    #[test]
    fn absent_is_none() {
        assert_eq!(parse("name: x").unwrap(), None);
        assert_eq!(parse("monitoring:").unwrap(), None);
    }

    #[test]
    fn reads_model_type_and_key() {
        let m = parse("monitoring: {model_type: regression, key: price}")
            .unwrap()
            .unwrap();
        assert_eq!(m.model_type, Some(ModelType::Regression));
        assert_eq!(m.key.as_deref(), Some("price"));
        let err = parse("monitoring: {model_type: clasification}").unwrap_err();
        assert_eq!(
            err.message,
            "must be \"classification\" or \"regression\", got \"clasification\"; did you mean \
             \"classification\"?"
        );
    }
}
