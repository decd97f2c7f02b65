//! The `update_strategy` section (RealtimeAPIs only): how many replicas a rolling update may add
//! or take away at a time.

use super::problem::Problem;
use super::quantity::{QuantityError, Surge};
use super::schema;
use super::section::Section;
use super::types::UpdateStrategy;

pub(crate) fn update_strategy(api: &Section) -> Result<UpdateStrategy, Problem> {
    let sec = api.section("update_strategy", schema::UPDATE_STRATEGY)?;
    let d = UpdateStrategy::default();
    let surge = |key: &str, default: Surge| -> Result<Surge, Problem> {
        Ok(sec
            .parsed(key, "a whole number or a percentage like 25%", |text| {
                text.parse().map_err(|e: QuantityError| e.0)
            })?
            .unwrap_or(default))
    };
    let max_surge = surge("max_surge", d.max_surge)?;
    let max_unavailable = surge("max_unavailable", d.max_unavailable)?;
    if max_surge.is_zero() && max_unavailable.is_zero() {
        let key = if sec.has("max_unavailable") {
            "max_unavailable"
        } else {
            "max_surge"
        };
        return Err(sec.problem(
            key,
            "max_surge and max_unavailable cannot both be 0, or an update could never replace a \
             replica",
        ));
    }
    Ok(UpdateStrategy {
        max_surge,
        max_unavailable,
    })
}

#[cfg(test)]
mod tests {
    use super::super::load::load;
    use super::*;

    fn parse(yaml: &str) -> Result<UpdateStrategy, Problem> {
        let node = load(yaml).unwrap().unwrap();
        let api = Section::new(&node, "", schema::API).unwrap();
        update_strategy(&api)
    }

    #[test]
    fn defaults_are_a_quarter() {
        let u = parse("name: x").unwrap();
        assert_eq!(u.max_surge, Surge::Percent(25));
        assert_eq!(u.max_unavailable, Surge::Percent(25));
    }

    #[test]
    fn reads_counts_and_percentages() {
        let u = parse("update_strategy: {max_surge: 2, max_unavailable: 0%}").unwrap();
        assert_eq!(u.max_surge, Surge::Count(2));
        assert_eq!(u.max_unavailable, Surge::Percent(0));
    }

    #[test]
    fn refuses_bad_values() {
        let err = parse("update_strategy: {max_surge: 0, max_unavailable: 0}").unwrap_err();
        assert_eq!(err.field, "update_strategy.max_unavailable");
        assert!(err
            .message
            .starts_with("max_surge and max_unavailable cannot both be 0"));
        let err = parse("update_strategy: {max_surge: 150%}").unwrap_err();
        assert_eq!(
            err.message,
            "a percentage must be at most 100%, got \"150%\""
        );
        let err = parse("update_strategy: {max_surge: -1}").unwrap_err();
        assert_eq!(err.message, "must not be negative, got \"-1\"");
        let err = parse("update_strategy: {max_surge: [1]}").unwrap_err();
        assert_eq!(
            err.message,
            "expected a whole number or a percentage like 25%, got a list"
        );
    }
}
