//! The `autoscaling` section (RealtimeAPIs only), with cortex v0.2x's defaults and rules.

use super::problem::Problem;
use super::quantity::{Duration, QuantityError};
use super::schema;
use super::section::Section;
use super::types::Autoscaling;

/// The autoscaler evaluates every 10 s, so windows are multiples of it.
const TICK_SECONDS: u64 = 10;

/// `default_target` is `processes_per_replica × threads_per_process`.
pub(crate) fn autoscaling(api: &Section, default_target: f64) -> Result<Autoscaling, Problem> {
    let sec = api.section("autoscaling", schema::AUTOSCALING)?;
    let d = Autoscaling::with_target(default_target);
    let (min_replicas, max_replicas, init_replicas) = replica_counts(&sec, &d)?;
    let (target_replica_concurrency, max_replica_concurrency) =
        concurrency(&sec, &d, default_target)?;
    let window = duration(&sec, "window", d.window)?;
    if window.0 < TICK_SECONDS || !window.0.is_multiple_of(TICK_SECONDS) {
        return Err(sec.problem(
            "window",
            format!("must be a multiple of 10s (at least 10s), e.g. 60s; got {window}"),
        ));
    }
    let below_one = |v: f64| (0.0..1.0).contains(&v);
    Ok(Autoscaling {
        min_replicas,
        max_replicas,
        init_replicas,
        target_replica_concurrency,
        max_replica_concurrency,
        window,
        downscale_stabilization_period: duration(
            &sec,
            "downscale_stabilization_period",
            d.downscale_stabilization_period,
        )?,
        upscale_stabilization_period: duration(
            &sec,
            "upscale_stabilization_period",
            d.upscale_stabilization_period,
        )?,
        max_downscale_factor: number_where(
            &sec,
            ("max_downscale_factor", d.max_downscale_factor),
            below_one,
            "must be at least 0 and less than 1",
        )?,
        max_upscale_factor: number_where(
            &sec,
            ("max_upscale_factor", d.max_upscale_factor),
            |v| v > 1.0,
            "must be greater than 1",
        )?,
        downscale_tolerance: number_where(
            &sec,
            ("downscale_tolerance", d.downscale_tolerance),
            below_one,
            "must be at least 0 and less than 1",
        )?,
        max_queue_length: sec.whole_u32("max_queue_length", d.max_queue_length, 0, 1 << 20)?,
        upscale_tolerance: number_where(
            &sec,
            ("upscale_tolerance", d.upscale_tolerance),
            |v| v >= 0.0,
            "must not be negative",
        )?,
    })
}

/// `min_replicas`, `max_replicas` and `init_replicas`, in order.
fn replica_counts(sec: &Section, d: &Autoscaling) -> Result<(u32, u32, u32), Problem> {
    // 0 scales to zero when there is no traffic (cortex required at least 1).
    let min = sec.whole_u32("min_replicas", d.min_replicas, 0, u32::MAX)?;
    let max = sec.whole_u32("max_replicas", d.max_replicas, 1, u32::MAX)?;
    if max < min {
        return Err(if sec.has("max_replicas") {
            sec.problem(
                "max_replicas",
                format!("must be at least min_replicas ({min}), got {max}"),
            )
        } else {
            sec.problem(
                "min_replicas",
                format!(
                    "is more than max_replicas ({max} by default); set max_replicas to at \
                     least {min}"
                ),
            )
        });
    }
    // An API that may scale to zero still starts with a replica: its deploy shows at once
    // whether it works, and it goes to zero once quiet.
    let init = sec.whole_u32("init_replicas", min.max(1).min(max), 0, u32::MAX)?;
    if init < min || init > max {
        return Err(sec.problem(
            "init_replicas",
            format!("must be between min_replicas ({min}) and max_replicas ({max}), got {init}"),
        ));
    }
    Ok((min, max, init))
}

/// `target_replica_concurrency` and `max_replica_concurrency`: the target may not be more
/// than the most a replica takes.
fn concurrency(sec: &Section, d: &Autoscaling, default_target: f64) -> Result<(f64, u32), Problem> {
    let max_concurrency = sec.whole_u32(
        "max_replica_concurrency",
        d.max_replica_concurrency,
        1,
        65535,
    )?;
    let target = sec.number("target_replica_concurrency", default_target)?;
    if target <= 0.0 {
        return Err(sec.problem(
            "target_replica_concurrency",
            format!("must be greater than 0, got {target}"),
        ));
    }
    if target <= f64::from(max_concurrency) {
        return Ok((target, max_concurrency));
    }
    Err(if sec.has("target_replica_concurrency") {
        sec.problem(
            "target_replica_concurrency",
            format!(
                "must not be more than max_replica_concurrency ({max_concurrency}), got \
                 {target}"
            ),
        )
    } else {
        let written = if sec.has("max_replica_concurrency") {
            ""
        } else {
            ", the default"
        };
        sec.problem(
            "max_replica_concurrency",
            format!(
                "must be at least target_replica_concurrency ({target}, which is \
                 processes_per_replica × threads_per_process by default), got \
                 {max_concurrency}{written}; lower predictor.threads_per_process or set \
                 autoscaling.max_replica_concurrency"
            ),
        )
    })
}

/// The number at `key` (or its default), refused with `rule` unless `ok` holds for it.
fn number_where(
    sec: &Section,
    (key, default): (&str, f64),
    ok: impl Fn(f64) -> bool,
    rule: &str,
) -> Result<f64, Problem> {
    let value = sec.number(key, default)?;
    if ok(value) {
        return Ok(value);
    }
    Err(sec.problem(key, format!("{rule}, got {value}")))
}

fn duration(sec: &Section, key: &str, default: Duration) -> Result<Duration, Problem> {
    Ok(sec
        .parsed(key, "a duration like 30s, 5m or 1h30m", |text| {
            text.parse().map_err(|e: QuantityError| e.0)
        })?
        .unwrap_or(default))
}

#[cfg(test)]
mod tests {
    use super::super::load::load;
    use super::*;

    fn parse(yaml: &str) -> Result<Autoscaling, Problem> {
        let node = load(yaml).unwrap().unwrap();
        let api = Section::new(&node, "", schema::API).unwrap();
        autoscaling(&api, 4.0)
    }

    fn message(yaml: &str) -> String {
        let p = parse(yaml).unwrap_err();
        format!("{}: {}", p.field, p.message)
    }

    #[test]
    fn defaults_follow_cortex() {
        let a = parse("name: x").unwrap();
        assert_eq!(a, Autoscaling::with_target(4.0));
        assert_eq!(a.min_replicas, 1);
        assert_eq!(a.max_replicas, 100);
        assert_eq!(a.init_replicas, 1);
        assert_eq!(a.target_replica_concurrency, 4.0);
        assert_eq!(a.max_replica_concurrency, 1024);
        assert_eq!(a.window, Duration(60));
        assert_eq!(a.downscale_stabilization_period, Duration(300));
        assert_eq!(a.upscale_stabilization_period, Duration(60));
        assert_eq!(a.max_downscale_factor, 0.75);
        assert_eq!(a.max_upscale_factor, 1.5);
        assert_eq!(a.downscale_tolerance, 0.05);
        assert_eq!(a.upscale_tolerance, 0.05);
    }

    #[test]
    fn init_replicas_follows_min_replicas() {
        let a = parse("autoscaling: {min_replicas: 3}").unwrap();
        assert_eq!(
            (a.min_replicas, a.init_replicas, a.max_replicas),
            (3, 3, 100)
        );
    }

    #[test]
    fn reads_every_key() {
        let a = parse(
            "autoscaling:\n  min_replicas: 2\n  max_replicas: 5\n  init_replicas: 3\n  \
             target_replica_concurrency: 2.5\n  max_replica_concurrency: 100\n  window: 1m30s\n  \
             downscale_stabilization_period: 10m\n  upscale_stabilization_period: 0s\n  \
             max_downscale_factor: 0\n  max_upscale_factor: 2\n  downscale_tolerance: 0.1\n  \
             upscale_tolerance: 0\n",
        )
        .unwrap();
        assert_eq!((a.min_replicas, a.max_replicas, a.init_replicas), (2, 5, 3));
        assert_eq!(a.target_replica_concurrency, 2.5);
        assert_eq!(a.max_replica_concurrency, 100);
        assert_eq!(a.window, Duration(90));
        assert_eq!(a.downscale_stabilization_period, Duration(600));
        assert_eq!(a.upscale_stabilization_period, Duration(0));
        assert_eq!(a.max_downscale_factor, 0.0);
        assert_eq!(a.max_upscale_factor, 2.0);
        assert_eq!(a.downscale_tolerance, 0.1);
        assert_eq!(a.upscale_tolerance, 0.0);
    }

    #[test]
    fn min_replicas_0_scales_to_zero_but_starts_with_one() {
        let a = parse("autoscaling: {min_replicas: 0, max_replicas: 3}").unwrap();
        assert_eq!((a.min_replicas, a.init_replicas), (0, 1));
        let a = parse("autoscaling: {min_replicas: 0, init_replicas: 0}").unwrap();
        assert_eq!(a.init_replicas, 0);
    }

    #[test]
    fn refuses_out_of_range_values() {
        let cases = [
            (
                "max_queue_length: -1",
                "autoscaling.max_queue_length: must not be negative, got -1",
            ),
            (
                "min_replicas: 5\n  max_replicas: 3",
                "autoscaling.max_replicas: must be at least min_replicas (5), got 3",
            ),
            (
                "min_replicas: 200",
                "autoscaling.min_replicas: is more than max_replicas (100 by default); set \
                 max_replicas to at least 200",
            ),
            (
                "init_replicas: 101",
                "autoscaling.init_replicas: must be between min_replicas (1) and max_replicas \
                 (100), got 101",
            ),
            (
                "target_replica_concurrency: 0",
                "autoscaling.target_replica_concurrency: must be greater than 0, got 0",
            ),
            (
                "target_replica_concurrency: 2000",
                "autoscaling.target_replica_concurrency: must not be more than \
                 max_replica_concurrency (1024), got 2000",
            ),
            (
                "max_replica_concurrency: 2",
                "autoscaling.max_replica_concurrency: must be at least \
                 target_replica_concurrency (4, which is processes_per_replica × \
                 threads_per_process by default), got 2; lower predictor.threads_per_process or \
                 set autoscaling.max_replica_concurrency",
            ),
            (
                "max_replica_concurrency: 70000",
                "autoscaling.max_replica_concurrency: must be between 1 and 65535, got 70000",
            ),
            (
                "window: 45s",
                "autoscaling.window: must be a multiple of 10s (at least 10s), e.g. 60s; got 45s",
            ),
            (
                "window: 0s",
                "autoscaling.window: must be a multiple of 10s (at least 10s), e.g. 60s; got 0s",
            ),
            (
                "window: 60",
                "autoscaling.window: \"60\" has no unit; write 60s for seconds or 60m for \
                 minutes",
            ),
            (
                "max_downscale_factor: 1",
                "autoscaling.max_downscale_factor: must be at least 0 and less than 1, got 1",
            ),
            (
                "max_upscale_factor: 1",
                "autoscaling.max_upscale_factor: must be greater than 1, got 1",
            ),
            (
                "downscale_tolerance: -0.1",
                "autoscaling.downscale_tolerance: must be at least 0 and less than 1, got -0.1",
            ),
            (
                "upscale_tolerance: -1",
                "autoscaling.upscale_tolerance: must not be negative, got -1",
            ),
            (
                "min_replica: 2",
                "autoscaling.min_replica: unknown key; did you mean \"min_replicas\"?",
            ),
        ];
        for (yaml, expected) in cases {
            assert_eq!(
                message(&format!("autoscaling:\n  {yaml}\n")),
                expected,
                "{yaml}"
            );
        }
    }
}
