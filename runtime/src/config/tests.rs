//! The configuration's tests: the guide's tables, the example file, defaults, every rule and
//! where its error points.

use super::*;

const SEED_TABLES: &str = include_str!("../../tests/fixtures/seed-tables.toml");
const EXAMPLE: &str = include_str!("../../caxton.example.toml");

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "caxton.toml")
}

fn error(text: &str) -> String {
    match parse(text) {
        Ok(config) => panic!("expected an error for {text:?}, got {config:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_validate_and_empty_file_is_defaults() {
    Config::default().validate().unwrap();
    Config::for_tests().validate().unwrap();
    assert_eq!(parse("").unwrap(), Config::default());
}

#[test]
fn redacted_hides_header_values_and_endpoint_credentials_only() {
    let mut c = Config::default();
    c.observability
        .otlp_headers
        .insert("api-key".into(), "s3cret".into());
    c.observability.otlp_endpoint = "https://user:pw@collector:4318".into();
    let shown = toml::to_string(&c.redacted()).unwrap();
    assert!(
        !shown.contains("s3cret") && !shown.contains("pw@"),
        "{shown}"
    );
    assert!(
        shown.contains("api-key") && shown.contains("collector:4318"),
        "{shown}"
    );
    assert_eq!(c.redacted().server, c.server);
}

#[test]
fn for_tests_uses_ephemeral_loopback_ports() {
    let c = Config::for_tests();
    assert_eq!(c.server.api_address, "127.0.0.1:0".parse().unwrap());
    assert_eq!(c.server.metrics_address, "127.0.0.1:0".parse().unwrap());
    assert_eq!(c.server.data_dir, std::env::temp_dir());
    assert_eq!(c.agents, AgentsConfig::default());
}

#[test]
fn documented_defaults() {
    let c = Config::default();
    assert_eq!(c.server.api_address, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(c.server.metrics_address, "127.0.0.1:9090".parse().unwrap());
    assert_eq!(c.server.max_body_bytes, 1_048_576);
    assert_eq!(c.server.max_agents, 200_000);
    assert_eq!(c.server.reply_timeout, Duration::from_secs(5));
    assert_eq!(c.agents.memory_limit, 16_777_216);
    assert_eq!(c.agents.fuel_per_message, 10_000_000);
    assert_eq!(c.agents.mailbox_capacity, 1024);
    assert_eq!(c.agents.max_instances, 1000);
    assert_eq!(c.server.shutdown_timeout, Duration::from_secs(10));
    assert_eq!(c.agents.execution_threads, 0);
    assert!(c.agents.execution_pool_size() >= 4);
    assert_eq!(c.agents.mailbox_bytes, 16 << 20);
    assert_eq!(c.agents.in_flight_bytes, 256 << 20);
    assert_eq!(c.agents.max_receivers, 1024);
    assert_eq!(c.agents.max_hops, 16);
    assert_eq!(c.agents.log_lines_per_execution, 100);
    assert_eq!(c.agents.log_bytes_per_execution, 65536);
    let o = &c.observability;
    assert!((!o.enable_tracing, o.enable_metrics, !o.enable_logging) == (true, true, true));
    assert_eq!(o.trace_sample_rate, 0.1);
    assert_eq!(o.metrics.http_duration_buckets.len(), 12);
    assert_eq!(o.metrics.agent_execution_buckets.len(), 9);
    assert_eq!(
        c.profiling.server_address,
        "127.0.0.1:6060".parse().unwrap()
    );
    assert_eq!(c.profiling.sample_rate, 100);
}

#[test]
fn seed_tables_parse_unchanged() {
    let c = Config::from_toml_str(SEED_TABLES, "seed-tables.toml").unwrap();
    let o = &c.observability;
    assert!(o.enable_tracing && o.enable_metrics && o.enable_logging);
    assert_eq!(o.otlp_endpoint, "http://otel-collector:4317");
    assert_eq!(o.otlp_timeout, Duration::from_secs(10));
    assert_eq!(
        o.otlp_headers.get("api-key").map(String::as_str),
        Some("your-api-key")
    );
    assert_eq!(o.trace_sample_rate, 0.1);
    assert_eq!(o.deployment_environment, "production");
    assert_eq!(
        o.metrics.http_duration_buckets,
        [
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
        ]
    );
    assert_eq!(
        o.metrics.agent_execution_buckets,
        [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0]
    );
    assert_eq!(o.metrics.export_interval, Duration::from_secs(15));
    assert_eq!(o.metrics.export_timeout, Duration::from_secs(5));
    assert!(o.metrics.label_enabled("agent_id"));
    assert!(!o.metrics.label_enabled("sensitive_data"));
    assert_eq!(o.logging.format, LogFormat::Json);
    assert_eq!(o.logging.output, LogOutput::Stdout);
    assert_eq!(o.logging.debug_sample_rate, 0.01);
    assert_eq!(o.logging.trace_id_key, "trace_id");
    let p = &c.profiling;
    assert!(p.enabled);
    assert_eq!(p.endpoint.as_deref(), Some("http://pyroscope:4040"));
    assert_eq!(p.server_address, "0.0.0.0:6060".parse().unwrap());
    assert_eq!(p.sample_rate, 100);
    assert_eq!(p.profile_types.len(), 5);
    assert_eq!(p.profile_types[4], ProfileType::InuseSpace);
}

#[test]
fn example_file_equals_defaults() {
    let example = Config::from_toml_str(EXAMPLE, "caxton.example.toml").unwrap();
    assert_eq!(example, Config::default());
}

/// Parsing alone cannot notice a key missing from the example (its default fills in), so
/// compare the example's keys with every key a config serializes to. Keys without a fixed
/// default (optional ones, the build's version) may appear as a commented `# key = ...`.
#[test]
fn example_file_spells_out_every_key() {
    fn leaves(value: &toml::Value, prefix: &str, out: &mut Vec<String>) {
        match value.as_table() {
            Some(table) if !table.is_empty() => {
                for (k, v) in table {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(v, &path, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }
    let mut every_key_set = Config::default();
    every_key_set.observability.otlp_protocol = Some(OtlpProtocol::Grpc);
    every_key_set.profiling.endpoint = Some("http://127.0.0.1:4040".into());
    every_key_set.server.api_token = Some(Secret::new("t"));
    every_key_set.server.api_token_file = Some("/run/secrets/caxton/api-token".into());
    let mut expected = Vec::new();
    leaves(
        &toml::Value::try_from(every_key_set).unwrap(),
        "",
        &mut expected,
    );
    let example: toml::Value = toml::from_str(EXAMPLE).unwrap();
    let commented = |key: &str| {
        let leaf = key.rsplit('.').next().unwrap();
        EXAMPLE
            .lines()
            .any(|line| line.starts_with(&format!("# {leaf} = ")))
    };
    let missing: Vec<_> = expected
        .iter()
        .filter(|key| {
            key.split('.')
                .try_fold(&example, |v, segment| v.get(segment))
                .is_none()
                && !commented(key)
        })
        .collect();
    assert!(missing.is_empty(), "caxton.example.toml lacks {missing:?}");
    assert!(expected.len() > 40, "only {} keys found", expected.len());
}

#[test]
fn serialized_config_parses_back_identical() {
    let mut c = Config::default();
    c.agents.memory_limit = 3 * MIB + 1;
    c.observability.otlp_protocol = Some(OtlpProtocol::HttpProtobuf);
    c.observability.logging.output = LogOutput::File("/var/log/caxton.log".into());
    c.observability
        .otlp_headers
        .insert("api-key".into(), "k".into());
    c.profiling.endpoint = Some("https://pyroscope.example:4040".into());
    c.server.reply_timeout = Duration::from_millis(1500);
    let text = toml::to_string(&c).unwrap();
    assert_eq!(parse(&text).unwrap(), c, "{text}");
}

#[test]
fn unknown_key_names_key_table_file_and_line() {
    let msg = error("[server]\napi_adress = \"127.0.0.1:1\"\n");
    assert!(msg.starts_with("caxton.toml:2:1: "), "{msg}");
    assert!(msg.contains("unknown field `api_adress`"), "{msg}");
    assert!(msg.contains("key `server.api_adress`"), "{msg}");

    let msg = error("[observability.logging]\nlevel = \"info\"\n  colour = true\n");
    assert!(msg.starts_with("caxton.toml:3:3: "), "{msg}");
    assert!(msg.contains("key `observability.logging.colour`"), "{msg}");

    let msg = error("[agents]\nmailbox_capacity = 8\n[sever]\nx = 1\n");
    assert!(msg.starts_with("caxton.toml:3:"), "{msg}");
    assert!(msg.contains("`sever`"), "{msg}");
}

#[test]
fn unknown_key_inside_inline_table_is_located() {
    let msg = error("observability = { metrics = { buckets = [1.0] } }\n");
    assert!(msg.contains("unknown field `buckets`"), "{msg}");
    assert!(msg.contains("key `observability.metrics.buckets`"), "{msg}");
    assert!(msg.starts_with("caxton.toml:1:"), "{msg}");
}

#[test]
fn wrong_type_names_key_and_line() {
    let msg = error("[server]\nmax_agents = \"many\"\n");
    assert!(msg.starts_with("caxton.toml:2:"), "{msg}");
    assert!(msg.contains("key `server.max_agents`"), "{msg}");
}

#[test]
fn bad_enum_in_array_names_element() {
    let msg = error("[profiling]\nprofile_types = [\"cpu\", \"heap\"]\n");
    assert!(msg.contains("heap"), "{msg}");
    assert!(msg.contains("key `profiling.profile_types[1]`"), "{msg}");
    assert!(msg.starts_with("caxton.toml:2:"), "{msg}");
}

#[test]
fn syntax_error_has_position() {
    let msg = error("[server]\napi_address = \n");
    assert!(msg.starts_with("caxton.toml:2:"), "{msg}");
}

#[test]
fn out_of_range_sample_rate_names_key_and_line() {
    let msg = error("[observability]\ntrace_sample_rate = 1.5\n");
    assert_eq!(
        msg,
        "caxton.toml:2:1: observability.trace_sample_rate = 1.5: must be within [0, 1]"
    );
    let err = parse("[observability.logging]\ndebug_sample_rate = -0.1\n").unwrap_err();
    assert_eq!(err.key(), Some("observability.logging.debug_sample_rate"));
    assert_eq!(err.line(), Some(2));
    let err = parse("observability.logging.trace_sample_rate = nan\n").unwrap_err();
    assert_eq!(err.key(), Some("observability.logging.trace_sample_rate"));
    assert_eq!(err.line(), Some(1));
    parse("[observability]\ntrace_sample_rate = 1\n").unwrap();
}

#[test]
fn buckets_must_be_positive_and_strictly_increasing() {
    let msg = error("[observability.metrics]\nhttp_duration_buckets = [0.1, 0.5, 0.5, 1.0]\n");
    assert!(
        msg.starts_with("caxton.toml:2:1: observability.metrics.http_duration_buckets = "),
        "{msg}"
    );
    assert!(
        msg.contains("strictly increasing, found 0.5 after 0.5"),
        "{msg}"
    );

    let err = parse("[observability.metrics]\nagent_execution_buckets = [1.0, 0.5]\n");
    assert_eq!(
        err.unwrap_err().key(),
        Some("observability.metrics.agent_execution_buckets")
    );
    let msg = error("[observability.metrics]\nagent_execution_buckets = []\n");
    assert!(msg.contains("must not be empty"), "{msg}");
    let msg = error("[observability.metrics]\nhttp_duration_buckets = [0.0, 1.0]\n");
    assert!(msg.contains("finite and > 0"), "{msg}");
    let msg = error("[observability.metrics]\nhttp_duration_buckets = [1.0, inf]\n");
    assert!(msg.contains("finite and > 0"), "{msg}");
}

#[test]
fn memory_limit_accepts_bytes_and_units() {
    let limit =
        |v: &str| parse(&format!("[agents]\nmemory_limit = {v}\n")).map(|c| c.agents.memory_limit);
    assert_eq!(limit("\"16MiB\"").unwrap(), 16_777_216);
    assert_eq!(limit("16777216").unwrap(), 16_777_216);
    assert_eq!(limit("\"64MB\"").unwrap(), 64_000_000);
    assert_eq!(limit("\"1GiB\"").unwrap(), 1_073_741_824);
    assert_eq!(limit("\"512 KiB\"").unwrap(), 524_288);
    assert_eq!(limit("\"256Mi\"").unwrap(), 256 * MIB);

    let msg = limit("\"16 parsecs\"").unwrap_err().to_string();
    assert!(msg.starts_with("caxton.toml:2:"), "{msg}");
    assert!(msg.contains("unknown unit \"parsecs\""), "{msg}");
    assert!(msg.contains("key `agents.memory_limit`"), "{msg}");
    let msg = limit("-5").unwrap_err().to_string();
    assert!(msg.contains("negative"), "{msg}");
    let msg = limit("\"1000\"").unwrap_err().to_string();
    assert_eq!(
        msg,
        "caxton.toml:2:1: agents.memory_limit = 1000: must be at least 65536 bytes (64KiB, one wasm page)"
    );
    assert!(
        limit("\"99999999TiB\"")
            .unwrap_err()
            .to_string()
            .contains("64 bits")
    );
}

#[test]
fn durations_parse_and_bad_ones_name_key() {
    let c =
        parse("[observability]\notlp_timeout = \"500ms\"\n[agents]\nexecution_timeout = \"2m\"\n")
            .unwrap();
    assert_eq!(c.observability.otlp_timeout, Duration::from_millis(500));
    assert_eq!(c.agents.execution_timeout, Duration::from_secs(120));

    let msg = error("[observability]\notlp_timeout = \"10 parsecs\"\n");
    assert!(msg.starts_with("caxton.toml:2:"), "{msg}");
    assert!(msg.contains("invalid duration \"10 parsecs\""), "{msg}");
    assert!(msg.contains("key `observability.otlp_timeout`"), "{msg}");

    let msg = error("[server]\nreply_timeout = 5\n");
    assert!(msg.contains("key `server.reply_timeout`"), "{msg}");
    assert!(msg.contains("a duration string"), "{msg}");

    let err = parse("[agents]\nexecution_timeout = \"0s\"\n").unwrap_err();
    assert_eq!(err.key(), Some("agents.execution_timeout"));
}

#[test]
fn bad_address_names_key() {
    let msg = error("[server]\n\nmetrics_address = \"localhost\"\n");
    assert!(msg.starts_with("caxton.toml:3:"), "{msg}");
    assert!(
        msg.contains("invalid address \"localhost\": expected IP:port"),
        "{msg}"
    );
    assert!(msg.contains("key `server.metrics_address`"), "{msg}");
    let c = parse("[server]\napi_address = \"[::1]:8081\"\n").unwrap();
    assert_eq!(c.server.api_address, "[::1]:8081".parse().unwrap());
}

#[test]
fn zero_limits_are_rejected() {
    for (table, key) in [
        ("agents", "mailbox_capacity"),
        ("agents", "fuel_per_message"),
        ("agents", "max_instances"),
        ("agents", "mailbox_bytes"),
        ("agents", "max_receivers"),
        ("agents", "max_hops"),
        ("server", "max_agents"),
        ("server", "max_body_bytes"),
    ] {
        let err = parse(&format!("[{table}]\n{key} = 0\n")).unwrap_err();
        let dotted = format!("{table}.{key}");
        assert_eq!(err.key(), Some(dotted.as_str()));
        assert!(err.to_string().ends_with("= 0: must be > 0"), "{err}");
    }
}

#[test]
fn otlp_endpoint_must_be_http_url() {
    let msg = error("[observability]\notlp_endpoint = \"otel-collector:4317\"\n");
    assert!(
        msg.contains("observability.otlp_endpoint = \"otel-collector:4317\": must be an http:// or https:// URL"),
        "{msg}"
    );
    let msg = error("[observability]\notlp_endpoint = \"http://collector:43x7\"\n");
    assert!(msg.contains("port \"43x7\""), "{msg}");
    assert!(error("[observability]\notlp_endpoint = \"http://\"\n").contains("must name a host"));
    parse("[observability]\notlp_endpoint = \"https://[::1]:4318/v1\"\n").unwrap();
    let msg = error("[profiling]\nendpoint = \"pyroscope:4040\"\n");
    assert!(msg.contains("profiling.endpoint"), "{msg}");
}

#[test]
fn otlp_protocol_explicit_or_from_port() {
    let protocol = |toml: &str| parse(toml).unwrap().observability.effective_otlp_protocol();
    assert_eq!(protocol(""), OtlpProtocol::Grpc);
    assert_eq!(
        protocol("[observability]\notlp_endpoint = \"http://c:4318\"\n"),
        OtlpProtocol::HttpProtobuf
    );
    assert_eq!(
        protocol("[observability]\notlp_endpoint = \"http://c:4318\"\notlp_protocol = \"grpc\"\n"),
        OtlpProtocol::Grpc
    );
    assert_eq!(
        protocol("[observability]\notlp_protocol = \"http/protobuf\"\n"),
        OtlpProtocol::HttpProtobuf
    );
    assert!(error("[observability]\notlp_protocol = \"http\"\n").contains("otlp_protocol"));
}

#[test]
fn profiling_sample_rate_bounds() {
    for bad in ["0", "1001"] {
        let err = parse(&format!("[profiling]\nsample_rate = {bad}\n")).unwrap_err();
        assert_eq!(err.key(), Some("profiling.sample_rate"));
        assert!(err.to_string().contains("1..=1000"), "{err}");
    }
    parse("[profiling]\nsample_rate = 1000\n").unwrap();
    let err = parse("[profiling]\nenabled = true\nprofile_types = []\n").unwrap_err();
    assert_eq!(err.key(), Some("profiling.profile_types"));
}

#[test]
fn profiling_sampler_names() {
    for (name, want) in [
        ("auto", caxton_profiles::Sampler::Auto),
        ("perf_event", caxton_profiles::Sampler::PerfEvent),
        ("signal", caxton_profiles::Sampler::Signal),
    ] {
        let c = parse(&format!("[profiling]\nsampler = \"{name}\"\n")).unwrap();
        assert_eq!(c.profiling.sampler, want);
    }
    let msg = error("[profiling]\nsampler = \"perf\"\n");
    assert!(
        msg.contains("profiling.sampler") && msg.contains("perf_event"),
        "{msg}"
    );
}

#[test]
fn logging_level_format_and_output() {
    let msg = error("[observability.logging]\nlevel = \"verbose\"\n");
    assert!(msg.contains("trace, debug, info, warn, error"), "{msg}");
    let msg = error("[observability.logging]\ntimestamp_format = \"unix\"\n");
    assert!(msg.contains(r#"only "rfc3339" is supported"#), "{msg}");
    let msg = error("[observability.logging]\nmessage_key = \"level\"\n");
    assert!(
        msg.contains("must differ from observability.logging.level_key"),
        "{msg}"
    );
    let c = parse("[observability.logging]\nformat = \"text\"\noutput = \"stderr\"\n").unwrap();
    assert_eq!(c.observability.logging.format, LogFormat::Text);
    assert_eq!(c.observability.logging.output, LogOutput::Stderr);
    let c = parse("[observability.logging]\noutput = \"/var/log/caxton.log\"\n").unwrap();
    assert_eq!(
        c.observability.logging.output,
        LogOutput::File("/var/log/caxton.log".into())
    );
    assert!(error("[observability.logging]\noutput = \"\"\n").contains("empty log output"));
}

#[test]
fn label_enabled_needs_include_and_not_exclude() {
    let c = parse(
        "[observability.metrics]\ninclude_labels = [\"agent_type\", \"agent_id\"]\nexclude_labels = [\"agent_id\"]\n",
    )
    .unwrap();
    let m = &c.observability.metrics;
    assert!(m.label_enabled("agent_type"));
    assert!(!m.label_enabled("agent_id"));
    assert!(!m.label_enabled("message_type"));
}

#[test]
fn validate_without_source_names_key() {
    let mut c = Config::default();
    c.observability.trace_sample_rate = 2.0;
    let err = c.validate().unwrap_err();
    assert_eq!(err.line(), None);
    assert_eq!(
        err.to_string(),
        "<in-memory config>: observability.trace_sample_rate = 2: must be within [0, 1]"
    );
}

#[test]
fn load_reads_file_and_errors_name_path() {
    let dir = std::env::temp_dir().join(format!("caxton-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, "[agents]\nmailbox_capacity = 7\n").unwrap();
    assert_eq!(Config::load(&good).unwrap().agents.mailbox_capacity, 7);

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[agents]\nmailbox_capacity = 0\n").unwrap();
    let msg = Config::load(&bad).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("{}:2:1: agents.mailbox_capacity", bad.display())),
        "{msg}"
    );

    let missing = dir.join("missing.toml");
    let msg = Config::load(&missing).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("{}: cannot read config file", missing.display())),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
