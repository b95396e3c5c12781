use std::collections::{BTreeMap, BTreeSet};

use super::*;

fn ok() -> Cow<'static, str> {
    Cow::Borrowed("ok")
}

fn call(m: &Metrics, backend: &str, latency: Duration) {
    m.observe_request(Some("tools/call"), &ok(), None, Some(backend), latency);
}

fn rate_limited(m: &Metrics) {
    m.observe_request(
        Some("tools/list"),
        &Cow::Borrowed("refused"),
        Some("rate_limited"),
        None,
        Duration::ZERO,
    );
}

/// The value of the sample written exactly as `series` (name and labels).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn counts_from_every_thread_add_up() {
    let m = Metrics::new();
    // More threads than shards, so some share one.
    std::thread::scope(|scope| {
        for _ in 0..SHARDS + 3 {
            scope.spawn(|| {
                for _ in 0..10 {
                    call(&m, "crm", Duration::from_millis(12));
                }
                rate_limited(&m);
            });
        }
    });
    let calls = 10 * (SHARDS + 3);
    let text = m.render();
    assert!(
        text.contains(&format!(
            "cortex_requests_total{{method=\"tools/call\",outcome=\"ok\"}} {calls}\n"
        )),
        "{text}"
    );
    assert!(text.contains(&format!("cortex_rate_limited_total {}\n", SHARDS + 3)));
    assert!(text.contains(&format!(
        "cortex_tool_call_duration_seconds_count{{backend=\"crm\"}} {calls}\n"
    )));
    let sum = sample(
        &text,
        "cortex_tool_call_duration_seconds_sum{backend=\"crm\"}",
    );
    assert!((sum - 0.012 * calls as f64).abs() < 1e-9, "{sum}");
}

#[test]
fn renders_counters_histograms_and_gauges() {
    let m = Metrics::new();
    call(&m, "crm", Duration::from_millis(12));
    call(&m, "crm", Duration::from_millis(12));
    m.observe_request(
        Some("evil/\"method"),
        &Cow::Borrowed("rejected"),
        None,
        None,
        Duration::ZERO,
    );
    rate_limited(&m);
    m.observe_refresh(
        Duration::from_millis(30),
        7,
        &[("crm".into(), true), ("docs".into(), false)],
        1,
    );
    m.observe_name_clashes(2);
    let dropped = Arc::new(AtomicU64::new(5));
    m.track_audit_dropped(dropped.clone());
    dropped.fetch_add(1, Ordering::Relaxed);
    let text = m.render();
    for expected in [
        "cortex_requests_total{method=\"tools/call\",outcome=\"ok\"} 2\n",
        "cortex_requests_total{method=\"other\",outcome=\"rejected\"} 1\n",
        "cortex_rate_limited_total 1\n",
        "cortex_tool_call_duration_seconds_bucket{backend=\"crm\",le=\"0.01\"} 0\n",
        "cortex_tool_call_duration_seconds_bucket{backend=\"crm\",le=\"0.025\"} 2\n",
        "cortex_tool_call_duration_seconds_bucket{backend=\"crm\",le=\"+Inf\"} 2\n",
        "cortex_tool_call_duration_seconds_count{backend=\"crm\"} 2\n",
        "cortex_backend_up{backend=\"crm\"} 1\n",
        "cortex_backend_up{backend=\"docs\"} 0\n",
        "cortex_catalog_tools 7\n",
        "cortex_tools_quarantined 1\n",
        "cortex_catalog_name_clashes 2\n",
        "cortex_refresh_duration_seconds_bucket{le=\"0.025\"} 0\n",
        "cortex_refresh_duration_seconds_bucket{le=\"0.05\"} 1\n",
        "cortex_refresh_duration_seconds_bucket{le=\"30\"} 1\n",
        "cortex_refresh_duration_seconds_bucket{le=\"+Inf\"} 1\n",
        "cortex_refresh_duration_seconds_count 1\n",
        "cortex_audit_lines_dropped_total 6\n",
    ] {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }
    assert!(!text.contains("# EOF"), "{text}");
}

#[test]
fn histogram_buckets_are_cumulative() {
    let m = Metrics::new();
    for ms in [3, 50, 500, 5_000, 60_000] {
        call(&m, "crm", Duration::from_millis(ms));
    }
    let text = m.render();
    let bucket = |le: &str| {
        sample(
            &text,
            &format!("cortex_tool_call_duration_seconds_bucket{{backend=\"crm\",le=\"{le}\"}}"),
        )
    };
    assert_eq!(bucket("0.005"), 1.0);
    assert_eq!(bucket("0.05"), 2.0);
    assert_eq!(bucket("0.5"), 3.0);
    assert_eq!(bucket("1"), 3.0);
    assert_eq!(bucket("5"), 4.0);
    assert_eq!(bucket("30"), 4.0);
    assert_eq!(bucket("+Inf"), 5.0);
    let sum = sample(
        &text,
        "cortex_tool_call_duration_seconds_sum{backend=\"crm\"}",
    );
    assert!((sum - 65.553).abs() < 1e-9, "{sum}");
}

/// One sample line of the text format: `name{label="value",...} value`.
fn parse_sample(line: &str) -> (String, BTreeMap<String, String>, f64) {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("no value: {line}"));
    let name = &line[..name_end];
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "bad metric name: {line}"
    );
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars
                .next()
                .unwrap_or_else(|| panic!("open braces: {line}"));
            match c {
                '}' if key.is_empty() => {
                    rest = &inner[i + 1..];
                    break;
                }
                ',' if key.is_empty() => {}
                '=' => {
                    assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                    let mut value = String::new();
                    loop {
                        match chars.next().map(|(_, c)| c) {
                            Some('"') => break,
                            Some('\\') => match chars.next().map(|(_, c)| c) {
                                Some('n') => value.push('\n'),
                                Some(e @ ('\\' | '"')) => value.push(e),
                                other => panic!("bad escape {other:?}: {line}"),
                            },
                            Some(c) => value.push(c),
                            None => panic!("open quotes: {line}"),
                        }
                    }
                    let duplicate = labels.insert(std::mem::take(&mut key), value);
                    assert!(duplicate.is_none(), "label twice: {line}");
                }
                c if c.is_ascii_alphanumeric() || c == '_' => key.push(c),
                _ => panic!("bad label set: {line}"),
            }
        }
    }
    let value = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no value: {line}"));
    let value = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
    };
    (name.to_owned(), labels, value)
}

#[test]
fn every_metric_is_declared_and_labels_stay_bounded() {
    let m = Metrics::new();
    for i in 0..1_000 {
        m.observe_request(
            Some(&format!("vendor/method-{i}")),
            &Cow::Borrowed("rejected"),
            None,
            None,
            Duration::ZERO,
        );
    }
    m.observe_request(None, &Cow::Borrowed("rejected"), None, None, Duration::ZERO);
    for i in 0..1_000 {
        m.observe_duration(
            &format!("VERB{i}"),
            400,
            Some(&format!("vendor/method-{i}")),
            Some(&Cow::Borrowed("invalid_request")),
            Duration::ZERO,
        );
    }
    m.observe_duration("POST", 200, Some("tools/call"), None, Duration::ZERO);
    call(&m, "crm", Duration::from_millis(12));
    rate_limited(&m);
    m.observe_refresh(Duration::from_millis(30), 1, &[("crm".into(), true)], 0);
    let text = m.render();

    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps = BTreeSet::new();
    let mut series: BTreeMap<String, Vec<BTreeMap<String, String>>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(help) = line.strip_prefix("# HELP ") {
            let (name, text) = help.split_once(' ').unwrap();
            assert!(text.ends_with('.') && !text.ends_with(".."), "{line}");
            assert!(helps.insert(name.to_owned()), "HELP twice: {line}");
        } else if let Some(kind) = line.strip_prefix("# TYPE ") {
            let (name, kind) = kind.split_once(' ').unwrap();
            assert!(helps.contains(name), "TYPE before HELP: {line}");
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{line}"
            );
        } else {
            assert!(!line.starts_with('#'), "unexpected comment: {line}");
            let (name, labels, _) = parse_sample(line);
            let family = types
                .iter()
                .find(|(family, kind)| match kind.as_str() {
                    "histogram" => ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name.strip_suffix(s) == Some(family.as_str())),
                    _ => &name == *family,
                })
                .unwrap_or_else(|| panic!("sample of no declared metric: {line}"));
            series.entry(family.0.clone()).or_default().push(labels);
        }
    }
    let expected = [
        ("http_server_request_duration_seconds", "histogram"),
        ("mcp_server_operation_duration_seconds", "histogram"),
        ("cortex_requests_total", "counter"),
        ("cortex_tool_call_duration_seconds", "histogram"),
        ("cortex_rate_limited_total", "counter"),
        ("cortex_backend_up", "gauge"),
        ("cortex_catalog_tools", "gauge"),
        ("cortex_tools_quarantined", "gauge"),
        ("cortex_catalog_name_clashes", "gauge"),
        ("cortex_refresh_duration_seconds", "histogram"),
        ("cortex_audit_lines_dropped_total", "counter"),
        ("cortex_audit_file_reopen_failures_total", "counter"),
    ];
    assert_eq!(
        types,
        expected
            .iter()
            .map(|(n, k)| (n.to_string(), k.to_string()))
            .collect::<BTreeMap<_, _>>()
    );

    let methods: BTreeSet<&str> = series["cortex_requests_total"]
        .iter()
        .map(|l| l["method"].as_str())
        .collect();
    assert_eq!(
        methods,
        BTreeSet::from(["other", "none", "tools/call", "tools/list"]),
        "{text}"
    );
    for (family, labels) in &series {
        for set in labels {
            let allowed: &[&str] = match family.as_str() {
                "cortex_requests_total" => &["method", "outcome"],
                "cortex_tool_call_duration_seconds" => &["backend", "le"],
                "cortex_backend_up" => &["backend"],
                "cortex_refresh_duration_seconds" => &["le"],
                "http_server_request_duration_seconds" => {
                    &["http_request_method", "http_response_status_code", "le"]
                }
                "mcp_server_operation_duration_seconds" => &["mcp_method_name", "error_type", "le"],
                _ => &[],
            };
            assert!(
                set.keys().all(|k| allowed.contains(&k.as_str())),
                "{family}: {set:?}"
            );
        }
    }
    // 13 buckets (12 bounds and +Inf), a sum and a count.
    assert_eq!(series["cortex_tool_call_duration_seconds"].len(), 15);
    assert_eq!(series["cortex_refresh_duration_seconds"].len(), 15);
    // A thousand unknown verbs and methods fold into one series each.
    let http: BTreeSet<(String, String)> = series["http_server_request_duration_seconds"]
        .iter()
        .map(|l| {
            (
                l["http_request_method"].clone(),
                l["http_response_status_code"].clone(),
            )
        })
        .collect();
    assert_eq!(
        http,
        BTreeSet::from([
            ("POST".to_owned(), "200".to_owned()),
            ("_OTHER".to_owned(), "400".to_owned())
        ])
    );
    let mcp: BTreeSet<(String, String)> = series["mcp_server_operation_duration_seconds"]
        .iter()
        .map(|l| (l["mcp_method_name"].clone(), l["error_type"].clone()))
        .collect();
    assert_eq!(
        mcp,
        BTreeSet::from([
            ("tools/call".to_owned(), String::new()),
            ("other".to_owned(), "invalid_request".to_owned())
        ])
    );
}

#[test]
fn parses_escaped_label_values() {
    let (name, labels, value) = parse_sample(r#"x_total{a="q\"\\\n",b="+Inf"} 2.5"#);
    assert_eq!(name, "x_total");
    assert_eq!(labels["a"], "q\"\\\n");
    assert_eq!(labels["b"], "+Inf");
    assert_eq!(value, 2.5);
}

#[test]
fn every_metric_is_declared_before_its_first_series() {
    let text = Metrics::new().render();
    for name in [
        "http_server_request_duration_seconds",
        "mcp_server_operation_duration_seconds",
        "cortex_requests_total",
        "cortex_tool_call_duration_seconds",
        "cortex_backend_up",
        "cortex_rate_limited_total",
        "cortex_refresh_duration_seconds",
        "cortex_audit_lines_dropped_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing from\n{text}"
        );
    }
}
