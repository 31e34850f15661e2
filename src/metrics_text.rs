//! `/metrics` in the format the scraper asks for. [`crate::metrics::Metrics::encode`] writes
//! OpenMetrics, which Prometheus asks for in its `Accept` header; everything else (curl, promtool,
//! older scrapers and agents) gets the classic Prometheus text format 0.0.4, rewritten from it here.
//!
//! The two formats carry the same samples; they differ in metadata: OpenMetrics names a counter
//! family without its `_total` suffix and has `# UNIT` and `# EOF` lines, which the classic parser
//! would read as a family without samples next to samples without help.

/// `Content-Type` of the classic text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header value asks for OpenMetrics (as Prometheus does by default).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| {
        accept.split(',').any(|part| {
            let mut params = part.split(';');
            let media = params.next().unwrap_or("").trim();
            // `q=0` means "not acceptable".
            let refused = params.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        })
    })
}

/// Rewrites OpenMetrics text (as `prometheus-client` writes it) into the classic text format.
pub fn openmetrics_to_text(openmetrics: &str) -> String {
    // Families whose samples carry a suffix the family name lacks: counters (`_total`).
    let counters: std::collections::BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, kind)| kind.trim() == "counter")
        .map(|(name, _)| name)
        .collect();
    let family = |name: &str| -> String {
        if counters.contains(name) && !name.ends_with("_total") {
            format!("{name}_total")
        } else {
            name.to_owned()
        }
    };
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            // OpenMetrics escapes `"` in help text; the classic format does not.
            let help = help.replace("\\\"", "\"");
            out.push_str(&format!("# HELP {} {help}\n", family(name)));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let kind = match kind.trim() {
                "counter" | "gauge" | "histogram" | "summary" => kind.trim(),
                "info" | "stateset" => "gauge",
                _ => "untyped",
            };
            out.push_str(&format!("# TYPE {} {kind}\n", family(name)));
        } else {
            out.push_str(without_exemplar(line));
            out.push('\n');
        }
    }
    out
}

/// A sample line without its exemplar (` # {...}` after the value), which the classic format has
/// no place for. The label set is skipped first: a label value may itself contain ` # `.
fn without_exemplar(line: &str) -> &str {
    let mut values_start = 0;
    // A `{` after the first space belongs to the exemplar of a sample without labels.
    if let Some(open) = line.find('{').filter(|&open| !line[..open].contains(' ')) {
        let mut in_string = false;
        let mut escaped = false;
        for (i, c) in line[open..].char_indices() {
            match (in_string, escaped, c) {
                (true, true, _) => escaped = false,
                (true, false, '\\') => escaped = true,
                (true, false, '"') => in_string = false,
                (false, _, '"') => in_string = true,
                (false, _, '}') => {
                    values_start = open + i;
                    break;
                }
                _ => {}
            }
        }
    }
    match line[values_start..].find(" # ") {
        Some(at) => &line[..values_start + at],
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_gets_openmetrics_and_everyone_else_the_text_format() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(Some(prometheus)));
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(Some(
            "application/openmetrics-text; q=0, text/plain"
        )));
    }

    #[test]
    fn counters_take_their_suffix_and_openmetrics_only_lines_go() {
        let om = "# HELP sae_requests SAE \\\"calls\\\".\n# TYPE sae_requests counter\nsae_requests_total{code=\"OK\"} 3\n\
                  # HELP sae_wait_seconds Wait.\n# TYPE sae_wait_seconds histogram\n# UNIT sae_wait_seconds seconds\n\
                  sae_wait_seconds_bucket{le=\"+Inf\"} 1 # {trace=\"a\"} 0.5\nsae_wait_seconds_sum 0.5\nsae_wait_seconds_count 1\n\
                  # HELP sae_up Up.\n# TYPE sae_up gauge\nsae_up 1\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP sae_requests_total SAE \"calls\".\n# TYPE sae_requests_total counter\nsae_requests_total{code=\"OK\"} 3\n\
             # HELP sae_wait_seconds Wait.\n# TYPE sae_wait_seconds histogram\n\
             sae_wait_seconds_bucket{le=\"+Inf\"} 1\nsae_wait_seconds_sum 0.5\nsae_wait_seconds_count 1\n\
             # HELP sae_up Up.\n# TYPE sae_up gauge\nsae_up 1\n"
        );
    }

    #[test]
    fn a_label_value_that_looks_like_an_exemplar_is_kept() {
        let line = r#"sae_requests_total{code="odd # {x} \" # y"} 1"#;
        assert_eq!(without_exemplar(line), line);
        assert_eq!(without_exemplar(&format!("{line} # {{a=\"b\"}} 1")), line);
        assert_eq!(without_exemplar("sae_up 1 # {a=\"b\"} 1"), "sae_up 1");
    }
}
