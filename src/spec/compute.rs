//! The `compute` section: what each replica asks for (`cpu`, `mem`, `gpu`; `inf` must be 0).
//!
//! Nothing is reserved by default (`cpu` and `mem` unset, `gpu: 0`), as with cortex's local
//! provider. When given, `cpu` must be at least 20m and `mem` at least 20Mi, as in cortex.

use super::problem::Problem;
use super::quantity::{Cpu, Mem, QuantityError};
use super::schema;
use super::section::Section;
use super::types::Compute;

pub(crate) const MIN_CPU: Cpu = Cpu(20);
pub(crate) const MIN_MEM_BYTES: u64 = 20 << 20;

pub(crate) fn compute(api: &Section) -> Result<Compute, Problem> {
    let sec = api.section("compute", schema::COMPUTE)?;

    let cpu = sec.parsed("cpu", "a cpu quantity like 200m, 0.5 or 2", |text| {
        let cpu: Cpu = text.parse().map_err(|e: QuantityError| e.0)?;
        if cpu < MIN_CPU {
            return Err(format!("must be at least {MIN_CPU}, got {cpu}"));
        }
        Ok(cpu)
    })?;
    let mem = sec.parsed("mem", "a memory quantity like 200Mi or 1G", |text| {
        let mem: Mem = text.parse().map_err(|e: QuantityError| e.0)?;
        if mem.bytes < MIN_MEM_BYTES {
            return Err(format!("must be at least 20Mi, got {mem}"));
        }
        Ok(mem)
    })?;
    let gpu = sec.whole_u32("gpu", 0, 0, u32::MAX)?;
    let inf = sec.whole("inf", 0, 0, u64::MAX)?;
    if inf != 0 {
        return Err(sec.problem(
            "inf",
            "inferentia chips are not supported; remove inf or set it to 0",
        ));
    }
    Ok(Compute { cpu, gpu, mem })
}

#[cfg(test)]
mod tests {
    use super::super::load::load;
    use super::*;

    fn parse(yaml: &str) -> Result<Compute, Problem> {
        let node = load(yaml).unwrap().unwrap();
        let api = Section::new(&node, "", schema::API).unwrap();
        compute(&api)
    }

    fn message(yaml: &str) -> String {
        let p = parse(yaml).unwrap_err();
        format!("{}: {}", p.field, p.message)
    }

    #[test]
    fn defaults_reserve_nothing() {
        let c = parse("name: a").unwrap();
        assert_eq!(
            c,
            Compute {
                cpu: None,
                gpu: 0,
                mem: None
            }
        );
        let c = parse("compute:").unwrap();
        assert_eq!(
            c,
            Compute {
                cpu: None,
                gpu: 0,
                mem: None
            }
        );
    }

    #[test]
    fn reads_quantities() {
        let c = parse("compute: {cpu: 0.2, mem: 200M, gpu: 1, inf: 0}").unwrap();
        assert_eq!(c.cpu, Some(Cpu(200)));
        assert_eq!(c.mem.as_ref().map(|m| m.bytes), Some(200_000_000));
        assert_eq!(c.mem.map(|m| m.text), Some("200M".to_string()));
        assert_eq!(c.gpu, 1);
        let c = parse("compute: {cpu: 1, mem: 1073741824}").unwrap();
        assert_eq!(c.cpu, Some(Cpu(1000)));
        assert_eq!(c.mem.map(|m| m.bytes), Some(1 << 30));
        let c = parse("compute: {cpu: \"250m\", mem: 1Gi}").unwrap();
        assert_eq!(c.cpu, Some(Cpu(250)));
    }

    #[test]
    fn refuses_bad_quantities() {
        assert_eq!(
            message("compute: {cpu: 10m}"),
            "compute.cpu: must be at least 20m, got 10m"
        );
        assert_eq!(
            message("compute: {cpu: lots}"),
            "compute.cpu: expected a cpu quantity like 200m, 0.5 or 2, got \"lots\""
        );
        assert_eq!(
            message("compute: {cpu: [1]}"),
            "compute.cpu: expected a cpu quantity like 200m, 0.5 or 2, got a list"
        );
        assert_eq!(
            message("compute: {mem: 10Mi}"),
            "compute.mem: must be at least 20Mi, got 10Mi"
        );
        assert!(message("compute: {mem: 2GB}").starts_with("compute.mem: unknown unit \"GB\""));
        assert_eq!(
            message("compute: {mem: {a: 1}}"),
            "compute.mem: expected a memory quantity like 200Mi or 1G, got a mapping"
        );
        assert_eq!(
            message("compute: {gpu: -1}"),
            "compute.gpu: must not be negative, got -1"
        );
        assert!(message("compute: {inf: 1}").starts_with("compute.inf: inferentia"));
        assert!(message("compute: 2").starts_with("compute: expected a mapping"));
    }
}
