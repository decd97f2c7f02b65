//! Whole-file tests of `parse_str`: cortex v0.2x examples, JSON round trips, robustness.

use super::*;

/// The iris example of cortex v0.22's docs, unchanged.
const IRIS_0_22: &str = "\
# cortex.yaml
- name: iris-classifier
  kind: RealtimeAPI
  predictor:
    type: python
    path: predictor.py
    config:
      bucket: cortex-examples
      key: sklearn/iris-classifier/model.pkl
  monitoring:
    model_type: classification
  compute:
    cpu: 0.2
    mem: 200M
";

/// Every section set explicitly.
const EXPLICIT: &str = "\
- name: text-generator
  kind: RealtimeAPI
  predictor:
    type: python
    path: src/predictor.py
    python_path: src
    image: cortexlabs/python-predictor-cpu:0.22.0
    processes_per_replica: 2
    threads_per_process: 4
    env:
      MODEL: gpt2
      WORKERS: 2
    config:
      num_words: 50
      device: cpu
  compute:
    cpu: 1
    gpu: 0
    inf: 0
    mem: 2Gi
  autoscaling:
    min_replicas: 2
    max_replicas: 10
    init_replicas: 3
    target_replica_concurrency: 6
    max_replica_concurrency: 64
    window: 1m
    downscale_stabilization_period: 10m
    upscale_stabilization_period: 30s
    max_downscale_factor: 0.5
    max_upscale_factor: 2
    downscale_tolerance: 0.1
    upscale_tolerance: 0.1
  update_strategy:
    max_surge: 1
    max_unavailable: 0%
  networking:
    endpoint: v1/generate
    api_gateway: public
    local_port: 8890
  monitoring:
    model_type: regression
    key: score

- name: image-classifier
  kind: BatchAPI
  predictor:
    type: command
    command: python batch.py --threads 2
  networking:
    endpoint: /classify
  compute:
    cpu: 500m
    mem: 1G
";

fn parse(text: &str) -> Result<Vec<ApiSpec>, SpecError> {
    parse_str(text, "cortex.yaml")
}

#[test]
fn cortex_0_22_iris_example_parses_unchanged() {
    let apis = parse(IRIS_0_22).unwrap();
    assert_eq!(apis.len(), 1);
    let api = &apis[0];
    assert_eq!(api.name, "iris-classifier");
    assert_eq!(api.kind, ApiKind::RealtimeAPI);
    assert_eq!(api.predictor.as_ref().unwrap().kind, PredictorType::Python);
    assert_eq!(
        api.predictor.as_ref().unwrap().path.as_deref(),
        Some("predictor.py")
    );
    assert_eq!(
        serde_json::Value::Object(api.predictor.as_ref().unwrap().config.clone()),
        serde_json::json!({"bucket": "cortex-examples", "key": "sklearn/iris-classifier/model.pkl"})
    );
    assert_eq!(
        api.monitoring,
        Some(Monitoring {
            model_type: Some(ModelType::Classification),
            key: None
        })
    );
    assert_eq!(api.compute.cpu, Some(Cpu(200)));
    assert_eq!(api.compute.mem.as_ref().map(|m| m.bytes), Some(200_000_000));
    assert_eq!(api.compute.gpu, 0);
    assert_eq!(api.networking.endpoint, "/iris-classifier");
    assert_eq!(api.autoscaling, Some(Autoscaling::with_target(1.0)));
    assert_eq!(api.update_strategy, Some(UpdateStrategy::default()));
}

/// examples/onnx/multi-model-classifier/cortex.yaml at cortex v0.21.0, unchanged.
const MULTI_MODEL_0_21: &str = "\
# this is an example for cortex release 0.21 and may not deploy correctly on other releases of cortex

- name: multi-model-classifier
  kind: RealtimeAPI
  predictor:
    type: onnx
    path: predictor.py
    models:
      - name: resnet50
        model_path: s3://cortex-examples/onnx/resnet50/resnet50-v2-7.onnx
      - name: mobilenet
        model_path: s3://cortex-examples/onnx/mobilenet/mobilenetv2-7.onnx
      - name: shufflenet
        model_path: s3://cortex-examples/onnx/shufflenet/shufflenet-v2-10.onnx
    config:
      image-classifier-classes: https://s3.amazonaws.com/deep-learning-models/image-models/imagenet_class_index.json
      image-resize: 224
  compute:
    mem: 2G
";

#[test]
fn cortex_0_21_models_list_is_read_as_models_paths() {
    let apis = parse(MULTI_MODEL_0_21).unwrap();
    let models = apis[0].predictor.as_ref().unwrap().models.clone().unwrap();
    let paths: Vec<(&str, &str)> = models
        .paths
        .iter()
        .map(|m| (m.name.as_str(), m.model_path.as_str()))
        .collect();
    assert_eq!(
        paths,
        [
            (
                "resnet50",
                "s3://cortex-examples/onnx/resnet50/resnet50-v2-7.onnx"
            ),
            (
                "mobilenet",
                "s3://cortex-examples/onnx/mobilenet/mobilenetv2-7.onnx"
            ),
            (
                "shufflenet",
                "s3://cortex-examples/onnx/shufflenet/shufflenet-v2-10.onnx"
            ),
        ]
    );
    assert_eq!(
        (models.dir, models.cache_size, models.disk_cache_size),
        (None, None, None)
    );
}

#[test]
fn explicit_sections_are_kept() {
    let apis = parse(EXPLICIT).unwrap();
    assert_eq!(apis.len(), 2);
    let rt = &apis[0];
    assert_eq!(
        rt.predictor.as_ref().unwrap().python_path.as_deref(),
        Some("src")
    );
    assert_eq!(
        (
            rt.predictor.as_ref().unwrap().processes_per_replica,
            rt.predictor.as_ref().unwrap().threads_per_process
        ),
        (2, 4)
    );
    assert_eq!(rt.predictor.as_ref().unwrap().env["WORKERS"], "2");
    assert_eq!(rt.compute.cpu, Some(Cpu(1000)));
    assert_eq!(rt.compute.mem.as_ref().map(|m| m.bytes), Some(2 << 30));
    let a = rt.autoscaling.as_ref().unwrap();
    assert_eq!(
        (a.min_replicas, a.max_replicas, a.init_replicas),
        (2, 10, 3)
    );
    assert_eq!(a.target_replica_concurrency, 6.0);
    assert_eq!(a.max_replica_concurrency, 64);
    assert_eq!(a.window, Duration(60));
    assert_eq!(a.downscale_stabilization_period, Duration(600));
    assert_eq!(a.upscale_stabilization_period, Duration(30));
    assert_eq!(
        rt.update_strategy,
        Some(UpdateStrategy {
            max_surge: Surge::Count(1),
            max_unavailable: Surge::Percent(0)
        })
    );
    assert_eq!(rt.networking.endpoint, "/v1/generate");

    let batch = &apis[1];
    assert_eq!(batch.kind, ApiKind::BatchAPI);
    assert_eq!(
        batch.predictor.as_ref().unwrap().command.as_deref(),
        Some(&["python", "batch.py", "--threads", "2"].map(String::from)[..])
    );
    assert_eq!(batch.autoscaling, None);
    assert_eq!(batch.update_strategy, None);
    assert_eq!(batch.compute.cpu, Some(Cpu(500)));
    assert_eq!(batch.networking.endpoint, "/classify");
}

#[test]
fn specs_round_trip_through_json() {
    for text in [IRIS_0_22, EXPLICIT] {
        for spec in parse(text).unwrap() {
            let json = serde_json::to_string(&spec).unwrap();
            let back: ApiSpec = serde_json::from_str(&json).unwrap();
            assert_eq!(back, spec, "{json}");
        }
    }
}

#[test]
fn json_uses_the_yaml_names_and_canonical_quantities() {
    let spec = &parse(EXPLICIT).unwrap()[0];
    let json = serde_json::to_value(spec).unwrap();
    assert_eq!(json["kind"], "RealtimeAPI");
    assert_eq!(json["predictor"]["type"], "python");
    assert_eq!(json["compute"]["cpu"], "1");
    assert_eq!(json["compute"]["mem"], "2Gi");
    assert_eq!(json["autoscaling"]["window"], "1m");
    assert_eq!(json["autoscaling"]["downscale_stabilization_period"], "10m");
    assert_eq!(json["autoscaling"]["upscale_stabilization_period"], "30s");
    assert_eq!(json["update_strategy"]["max_surge"], 1);
    assert_eq!(json["update_strategy"]["max_unavailable"], "0%");
    assert_eq!(json["networking"]["endpoint"], "/v1/generate");
    let batch = serde_json::to_value(&parse(EXPLICIT).unwrap()[1]).unwrap();
    assert!(batch.get("autoscaling").is_none());
    assert!(batch.get("update_strategy").is_none());
}

#[test]
fn errors_carry_file_line_column_and_field() {
    let text = IRIS_0_22.replace("    type: python", "    typ: python");
    let err = parse(&text).unwrap_err();
    assert_eq!(err.file, "cortex.yaml");
    assert_eq!((err.line, err.column), (5, 5));
    assert_eq!(err.field, "predictor.typ");
    assert_eq!(
        err.to_string(),
        "cortex.yaml:5:5: api \"iris-classifier\": predictor.typ: unknown key; did you mean \
         \"type\"?"
    );
}

#[test]
fn anchors_share_sections_between_apis() {
    let text = "\
- name: a
  kind: RealtimeAPI
  predictor: &predictor
    type: python
    path: p.py
  compute: &compute {cpu: 1, mem: 1Gi}
- name: b
  kind: RealtimeAPI
  predictor:
    <<: *predictor
    processes_per_replica: 2
  compute: *compute
";
    let apis = parse(text).unwrap();
    assert_eq!(
        apis[1].predictor.as_ref().unwrap().path.as_deref(),
        Some("p.py")
    );
    assert_eq!(apis[1].predictor.as_ref().unwrap().processes_per_replica, 2);
    assert_eq!(apis[1].compute, apis[0].compute);
}

#[test]
fn parse_file_reads_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cortex.yaml");
    std::fs::write(&path, IRIS_0_22).unwrap();
    assert_eq!(parse_file(&path).unwrap().len(), 1);
    std::fs::write(&path, "- name: Bad\n").unwrap();
    let err = parse_file(&path).unwrap_err();
    assert_eq!(err.file, path.display().to_string());
    assert_eq!((err.line, err.column), (1, 9));
    let err = parse_file(&dir.path().join("missing.yaml")).unwrap_err();
    assert_eq!((err.line, err.column), (0, 0));
    assert!(err.message.starts_with("cannot read the file: "));
}

/// Truncations, deletions and insertions of odd characters at every position of real configs:
/// each must give specs or an error, never a panic, and errors must point inside the text.
#[test]
fn mangled_configs_never_panic() {
    let odd = [
        ":", "-", "[", "{", "\"", "'", "&a", "*a", "!!int ", "<<: ", "\t", "\n", "  ", "|",
    ];
    for text in [IRIS_0_22, EXPLICIT] {
        let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        for &i in &boundaries {
            let mut variants = vec![text[..i].to_string()];
            let next = text[i..].chars().next().map_or(i, |c| i + c.len_utf8());
            variants.push(format!("{}{}", &text[..i], &text[next..]));
            for o in odd {
                variants.push(format!("{}{o}{}", &text[..i], &text[i..]));
            }
            for variant in variants {
                if let Err(err) = parse(&variant) {
                    let lines = variant.lines().count().max(1) + 1;
                    assert!(
                        err.line >= 1 && err.line <= lines && err.column >= 1,
                        "{err:?} for {variant:?}"
                    );
                    assert!(!err.message.is_empty());
                }
            }
        }
    }
}

#[test]
fn hostile_input_is_refused_without_panicking() {
    let cases = [
        "[".repeat(100_000),
        "- ".repeat(10_000),
        "{a: ".repeat(10_000),
        "\u{feff}- name: a".to_string(),
        "\0".to_string(),
        "- name: \u{1F600}\n".to_string(),
        "- *unknown".to_string(),
        "- &a [*a]".to_string(),
        "---\n---\n".to_string(),
        "%YAML 1.2\n---\n- 1\n".to_string(),
        "- !!binary aGVsbG8=\n".to_string(),
        "- ? [complex, key]\n  : value\n".to_string(),
    ];
    for text in cases {
        let _ = parse(&text);
    }
}

/// `config` holding `links` anchors, each nesting the previous one `levels` lists deeper.
fn chained_aliases(links: usize, levels: usize) -> String {
    let mut config = String::new();
    for k in 0..links {
        let inner = if k == 0 {
            "x".to_string()
        } else {
            format!("*a{}", k - 1)
        };
        let nested = format!("{}{inner}{}", "[".repeat(levels), "]".repeat(levels));
        config.push_str(&format!("      a{k}: &a{k} {nested}\n"));
    }
    format!(
        "- name: c\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: p.py\n    config:\n{config}"
    )
}

#[test]
fn chained_aliases_cannot_nest_past_the_depth_limit() {
    // 10 links of 90 levels would be 900 deep once expanded: refused, not a stack overflow.
    let err = parse(&chained_aliases(10, 90)).unwrap_err();
    assert!(
        err.message.contains("once its aliases are expanded"),
        "{err}"
    );
    // Shallow chains are fine, and what is accepted stays readable by serde_json.
    let specs = parse(&chained_aliases(3, 20)).unwrap();
    let json = serde_json::to_string(&specs[0]).unwrap();
    let _: ApiSpec = serde_json::from_str(&json).unwrap();
    // Two anchors of 70 levels nested: 140 deep, refused.
    assert!(parse(&chained_aliases(2, 70)).is_err());
}

#[test]
fn aliases_cannot_multiply_a_long_string_without_bound() {
    let big = "y".repeat(1 << 20);
    let mut text = format!(
        "- name: c\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: p.py\n    config:\n      big: &big {big}\n      copies:\n"
    );
    for _ in 0..8 {
        text.push_str("        - *big\n");
    }
    let err = parse(&text).unwrap_err();
    assert!(err.message.contains("MiB of text"), "{err}");
}

#[test]
fn config_reads_yaml_1_1_booleans_as_cortex_did() {
    let specs = parse(
        "- name: c\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: p.py\n    config:\n      debug: no\n      cache: on\n      quoted: \"no\"\n      word: nope\n",
    )
    .unwrap();
    let config = &specs[0].predictor.as_ref().unwrap().config;
    assert_eq!(config["debug"], serde_json::json!(false));
    assert_eq!(config["cache"], serde_json::json!(true));
    assert_eq!(config["quoted"], serde_json::json!("no"));
    assert_eq!(config["word"], serde_json::json!("nope"));
}

#[test]
fn a_tab_is_reported_where_it_is() {
    let err = parse("- name: a\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: p.py\n\tconfig: {}\n")
        .unwrap_err();
    assert_eq!((err.line, err.column), (6, 1), "{err}");
    assert!(
        err.message.contains("indent with spaces, not tabs"),
        "{err}"
    );
}

#[test]
fn a_duplicate_name_from_a_merge_points_at_the_second_api() {
    let err = parse(
        "- &base\n  name: a\n  kind: RealtimeAPI\n  predictor: {type: python, path: p.py}\n- <<: *base\n",
    )
    .unwrap_err();
    assert_eq!(err.line, 5, "{err}");
    assert!(
        err.message
            .contains("already the name of the api on line 2"),
        "{err}"
    );
}

#[test]
fn every_problem_of_a_file_is_reported_at_once() {
    let yaml = "\
- name: one
  kind: RealtimeAPI
  predictor: {type: python, path: p.py, threads_per_proces: 2}
  compute: {cpu: lots}
- name: two
  kind: RealtimeAPI
  predictor: {type: python, path: p.py}
- name: Three
  kind: RealtimeAPI
- name: two
  kind: BatchAPI
  predictor: {type: python, path: p.py}
";
    let err = parse(yaml).unwrap_err();
    let lines: Vec<String> = err.to_string().lines().map(str::to_string).collect();
    assert_eq!(err.count(), 4, "{err}");
    assert_eq!(lines.len(), 4, "{err}");
    assert!(
        lines[0].starts_with("cortex.yaml:3:") && lines[0].contains("threads_per_proces"),
        "{err}"
    );
    assert!(
        lines[1].starts_with("cortex.yaml:4:") && lines[1].contains("compute.cpu"),
        "{err}"
    );
    assert!(
        lines[2].starts_with("cortex.yaml:8:") && lines[2].contains("name"),
        "{err}"
    );
    assert!(
        lines[3].contains("already the name of the api on line 5"),
        "{err}"
    );
}
