//! The edge between the server's own types and the wire's (`api/`): specs, kinds and replica
//! phases are converted here, so neither side's shape leaks into the other.

use crate::api;
use crate::engine::ReplicaPhase;
use crate::spec;

impl From<spec::ApiKind> for api::ApiKind {
    fn from(kind: spec::ApiKind) -> api::ApiKind {
        match kind {
            spec::ApiKind::RealtimeAPI => api::ApiKind::RealtimeAPI,
            spec::ApiKind::BatchAPI => api::ApiKind::BatchAPI,
            spec::ApiKind::TrafficSplitter => api::ApiKind::TrafficSplitter,
        }
    }
}

impl From<ReplicaPhase> for api::ReplicaPhase {
    fn from(phase: ReplicaPhase) -> api::ReplicaPhase {
        match phase {
            ReplicaPhase::Pending => api::ReplicaPhase::Pending,
            ReplicaPhase::Initializing => api::ReplicaPhase::Initializing,
            ReplicaPhase::Ready => api::ReplicaPhase::Ready,
            ReplicaPhase::Restarting => api::ReplicaPhase::Restarting,
            ReplicaPhase::Failed => api::ReplicaPhase::Failed,
            ReplicaPhase::Stopped => api::ReplicaPhase::Stopped,
        }
    }
}

impl From<&spec::ApiSpec> for api::ApiConfig {
    fn from(s: &spec::ApiSpec) -> api::ApiConfig {
        let splitter = s.kind == spec::ApiKind::TrafficSplitter;
        api::ApiConfig {
            name: s.name.clone(),
            kind: s.kind.into(),
            predictor: s.predictor.as_ref().map(|p| api::PredictorConfig {
                kind: match p.kind {
                    spec::PredictorType::Python => "python",
                    spec::PredictorType::Command => "command",
                    spec::PredictorType::Onnx => "onnx",
                }
                .to_string(),
                path: p.path.clone(),
                command: p.command.clone(),
                model_path: p.model_path.clone(),
                models: p.models.clone(),
                config: p.config.clone(),
                python_path: p.python_path.clone(),
                env: p.env.clone(),
                processes_per_replica: p.processes_per_replica,
                threads_per_process: p.threads_per_process,
            }),
            apis: s
                .apis
                .iter()
                .map(|b| api::BackendConfig {
                    name: b.name.clone(),
                    weight: b.weight,
                })
                .collect(),
            compute: (!splitter).then(|| api::ComputeConfig {
                cpu: s.compute.cpu.as_ref().map(ToString::to_string),
                gpu: s.compute.gpu,
                mem: s.compute.mem.as_ref().map(ToString::to_string),
            }),
            autoscaling: s.autoscaling.as_ref().map(|a| api::AutoscalingConfig {
                min_replicas: a.min_replicas,
                max_replicas: a.max_replicas,
                init_replicas: a.init_replicas,
                target_replica_concurrency: a.target_replica_concurrency,
                max_replica_concurrency: a.max_replica_concurrency,
                window: a.window.to_string(),
                downscale_stabilization_period: a.downscale_stabilization_period.to_string(),
                upscale_stabilization_period: a.upscale_stabilization_period.to_string(),
                max_downscale_factor: a.max_downscale_factor,
                max_upscale_factor: a.max_upscale_factor,
                downscale_tolerance: a.downscale_tolerance,
                upscale_tolerance: a.upscale_tolerance,
                max_queue_length: a.max_queue_length,
            }),
            update_strategy: s
                .update_strategy
                .as_ref()
                .map(|u| api::UpdateStrategyConfig {
                    max_surge: surge(&u.max_surge),
                    max_unavailable: surge(&u.max_unavailable),
                }),
            networking: {
                // The gateway's limits; a BatchAPI's submissions have their own.
                let realtime = s.kind == spec::ApiKind::RealtimeAPI;
                let shown = |text: String| if realtime { text } else { String::new() };
                api::NetworkingConfig {
                    endpoint: s.networking.endpoint.clone(),
                    timeout: shown(s.networking.timeout.to_string()),
                    max_request_size: shown(s.networking.max_request_size.to_string()),
                }
            },
            monitoring: s.monitoring.as_ref().map(|m| api::MonitoringConfig {
                model_type: m.model_type.map(|t| {
                    match t {
                        spec::ModelType::Classification => "classification",
                        spec::ModelType::Regression => "regression",
                    }
                    .to_string()
                }),
                key: m.key.clone(),
            }),
        }
    }
}

fn surge(s: &spec::Surge) -> api::Surge {
    match s {
        spec::Surge::Count(n) => api::Surge::Count(*n),
        spec::Surge::Percent(_) => api::Surge::Percent(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire's JSON of a small config, written out: the contract `cortex get X -o json`
    /// shows (every default filled in).
    #[test]
    fn the_wire_config_json_is_pinned() {
        let yaml = "- name: echo\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: python3 server.py\n  compute: {mem: 200Mi}\n";
        let spec = spec::parse_str(yaml, "cortex.yaml").unwrap().remove(0);
        let wire = serde_json::to_value(api::ApiConfig::from(&spec)).unwrap();
        let expected = serde_json::json!({
            "name": "echo",
            "kind": "RealtimeAPI",
            "predictor": {
                "type": "command",
                "command": ["python3", "server.py"],
                "config": {},
                "env": {},
                "processes_per_replica": 1,
                "threads_per_process": 1
            },
            "compute": {"gpu": 0, "mem": "200Mi"},
            "autoscaling": {
                "min_replicas": 1,
                "max_replicas": 100,
                "init_replicas": 1,
                "target_replica_concurrency": 1.0,
                "max_replica_concurrency": 1024,
                "window": "1m",
                "downscale_stabilization_period": "5m",
                "upscale_stabilization_period": "1m",
                "max_downscale_factor": 0.75,
                "max_upscale_factor": 1.5,
                "downscale_tolerance": 0.05,
                "upscale_tolerance": 0.05,
                "max_queue_length": 100
            },
            "update_strategy": {"max_surge": "25%", "max_unavailable": "25%"},
            "networking": {"endpoint": "/echo", "timeout": "5m", "max_request_size": "64Mi"}
        });
        assert_eq!(wire, expected);
        let back: api::ApiConfig = serde_json::from_value(expected).unwrap();
        assert_eq!(back, api::ApiConfig::from(&spec));
    }

    /// The wire's JSON of a config is exactly what the spec itself serialises to (the shape
    /// `cortex get X -o json` has always had), for a config that sets every section.
    #[test]
    fn the_wire_config_has_the_specs_json_shape() {
        let yaml = r#"
- name: iris
  kind: RealtimeAPI
  predictor:
    type: python
    path: predictor.py
    python_path: lib
    config: {a: 1, b: [x]}
    env: {K: v}
    processes_per_replica: 2
    threads_per_process: 3
  compute: {cpu: 500m, gpu: 0, mem: 1Gi}
  autoscaling: {min_replicas: 1, max_replicas: 4, window: 1m30s}
  update_strategy: {max_surge: 1, max_unavailable: "50%"}
  networking: {endpoint: /v1/iris}
  monitoring: {model_type: classification, key: label}
- name: cmd
  kind: RealtimeAPI
  predictor:
    type: command
    command: ["python3", "server.py"]
"#;
        for spec in spec::parse_str(yaml, "cortex.yaml").unwrap() {
            let wire = serde_json::to_value(api::ApiConfig::from(&spec)).unwrap();
            assert_eq!(wire, serde_json::to_value(&spec).unwrap(), "{}", spec.name);
        }
    }
}
