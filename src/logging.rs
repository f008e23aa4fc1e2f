//! Logs: human-readable lines by default, JSON for log pipelines. `MYSQL_STS_LOG` filters.
//!
//! A JSON line is one object: `timestamp`, `level`, the pod's `ordinal` and `role` (on every line
//! of a subcommand that knows its pod: init, exec, sidecar), `message`, then the event's own
//! fields under their names, which are stable (the README lists them).

use std::fmt;
use std::io::IsTerminal;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;
use crate::identity::Identity;

/// Logs to stderr; `pod` is the identity the configuration resolved to, if the subcommand has one.
pub fn init(format: LogFormat, pod: Option<&Identity>) {
    let filter =
        EnvFilter::try_from_env("MYSQL_STS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // Colours only for a person at a terminal, never in `kubectl logs`.
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.event_format(JsonLines::of(pod)).init(),
    }
}

/// One JSON object per event, with the pod's fields on every line.
#[derive(Debug, Clone, Default)]
pub struct JsonLines {
    pod: Vec<(String, Value)>,
}

impl JsonLines {
    pub fn of(pod: Option<&Identity>) -> Self {
        let pod = pod.map_or_else(Vec::new, |identity| {
            vec![
                ("ordinal".to_owned(), Value::from(identity.ordinal)),
                ("role".to_owned(), Value::from(identity.role.to_string())),
            ]
        });
        JsonLines { pod }
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let mut line = Line(vec![
            ("timestamp".to_owned(), Value::from(timestamp)),
            (
                "level".to_owned(),
                Value::from(event.metadata().level().as_str()),
            ),
        ]);
        for (name, value) in &self.pod {
            line.set(name, value.clone());
        }
        event.record(&mut line);
        writeln!(writer, "{line}")
    }
}

/// A line's fields in the order they came; a later field of the same name replaces the
/// earlier one in its place, so that every name occurs once.
struct Line(Vec<(String, Value)>);

impl Line {
    fn set(&mut self, name: &str, value: Value) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, slot)) => *slot = value,
            None => self.0.push((name.to_owned(), value)),
        }
    }
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field.name(), Value::from(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field.name(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), Value::from(value));
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (name, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}:{value}", Value::from(name.as_str()))?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;
    use crate::identity::Naming;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// What `log` logs, as text and as parsed lines.
    fn lines_of(pod: Option<&Identity>, log: impl FnOnce()) -> (String, Vec<serde_json::Value>) {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLines::of(pod))
            .with_writer(captured.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect();
        (text, lines)
    }

    fn replica() -> Identity {
        let naming = Naming {
            service: None,
            namespace: "db".into(),
            cluster_domain: "cluster.local".into(),
            first_ordinal: 0,
        };
        Identity::derive("mysql-1", &naming, 100).unwrap()
    }

    #[test]
    fn every_json_line_carries_the_pod_and_the_events_fields_by_name() {
        let pod = replica();
        let (text, lines) = lines_of(Some(&pod), || {
            let eta: Option<u64> = Some(3);
            let none: Option<u64> = None;
            tracing::info!(
                phase = "cloning", donor = %"mysql-0", bytes = 412u64, mib_per_s = 160.5,
                eta_secs = eta, estimated_total_bytes = none,
                "clone in progress \"quoted\""
            );
            tracing::warn!(gtid = %"0-100-7", ordinal = 1, "a line naming the ordinal again");
        });
        assert_eq!(lines.len(), 2);
        for line in &lines {
            assert_eq!(line["ordinal"], 1, "{line}");
            assert_eq!(line["role"], "replica", "{line}");
            assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
        }
        let progress = &lines[0];
        assert_eq!(progress["level"], "INFO");
        assert_eq!(progress["message"], "clone in progress \"quoted\"");
        assert_eq!(progress["phase"], "cloning");
        assert_eq!(progress["donor"], "mysql-0");
        assert_eq!(progress["bytes"], 412);
        assert_eq!(progress["mib_per_s"], 160.5);
        assert_eq!(progress["eta_secs"], 3);
        assert!(
            progress.get("estimated_total_bytes").is_none(),
            "{progress}"
        );
        assert_eq!(lines[1]["gtid"], "0-100-7");
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(
            text.matches("\"ordinal\":").count(),
            2,
            "once a line: {text}"
        );
    }

    #[test]
    fn a_line_outside_a_pod_has_no_pod_fields() {
        let (_, lines) = lines_of(None, || {
            tracing::info!(path = "/opt", "agent binary installed")
        });
        assert_eq!(lines[0]["path"], "/opt");
        assert!(lines[0].get("ordinal").is_none() && lines[0].get("role").is_none());
    }
}
