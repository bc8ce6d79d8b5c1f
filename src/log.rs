//! Log lines on stderr, one write per line so lines from different threads never interleave:
//! logfmt by default (`ts=… level=… msg=… key=value`), or one JSON object per line with the same
//! fields (`--log-format json`), filtered by `--log-level`. Nothing here knows about keys:
//! callers pass only what may be shown (source, an 8-hex digest prefix, outcomes), never a key,
//! a MAC or a full digest.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }

    /// `error`, `warn`, `info` or `debug`.
    pub fn parse(name: &str) -> Option<Level> {
        [Level::Debug, Level::Info, Level::Warn, Level::Error]
            .into_iter()
            .find(|l| l.as_str() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Logfmt,
    Json,
}

impl Format {
    /// `logfmt` or `json`.
    pub fn parse(name: &str) -> Option<Format> {
        match name {
            "logfmt" => Some(Format::Logfmt),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

static MIN_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static FORMAT: AtomicU8 = AtomicU8::new(0);

/// Sets the process's log format and lowest level shown.
pub fn configure(format: Format, level: Level) {
    FORMAT.store(u8::from(format == Format::Json), Ordering::Relaxed);
    MIN_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether lines of this level are written.
pub fn enabled(level: Level) -> bool {
    level as u8 >= MIN_LEVEL.load(Ordering::Relaxed)
}

/// Writes one line: ts, level, msg, then `fields` in order.
pub fn emit(level: Level, msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    if !enabled(level) {
        return;
    }
    let ts = now_rfc3339();
    let line = if FORMAT.load(Ordering::Relaxed) == 1 {
        json_line(&ts, level, msg, fields)
    } else {
        logfmt_line(&ts, level, msg, fields)
    };
    // A closed stderr must not take the server down.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

pub fn info(msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    emit(Level::Info, msg, fields);
}

pub fn warn(msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    emit(Level::Warn, msg, fields);
}

pub fn error(msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    emit(Level::Error, msg, fields);
}

fn logfmt_line(
    ts: &str,
    level: Level,
    msg: &str,
    fields: &[(&str, &dyn std::fmt::Display)],
) -> String {
    let mut line = String::with_capacity(160);
    let _ = write!(line, "ts={ts} level={} msg=", level.as_str());
    push_logfmt_value(&mut line, msg);
    for (key, value) in fields {
        line.push(' ');
        line.push_str(key);
        line.push('=');
        push_logfmt_value(&mut line, &value.to_string());
    }
    line.push('\n');
    line
}

/// A logfmt value: bare when it is plain, otherwise quoted with `"`, `\` and control characters
/// escaped, so a sender-chosen string cannot forge a field or a line.
fn push_logfmt_value(line: &mut String, value: &str) {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '=' && c != '\\');
    if plain {
        line.push_str(value);
        return;
    }
    line.push('"');
    for c in value.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(line, "\\u{{{:x}}}", c as u32);
            }
            c => line.push(c),
        }
    }
    line.push('"');
}

/// The same fields, in the same order, as one JSON object; numbers stay numbers.
fn json_line(
    ts: &str,
    level: Level,
    msg: &str,
    fields: &[(&str, &dyn std::fmt::Display)],
) -> String {
    let mut line = String::with_capacity(200);
    line.push_str("{\"ts\":");
    push_json_string(&mut line, ts);
    line.push_str(",\"level\":\"");
    line.push_str(level.as_str());
    line.push_str("\",\"msg\":");
    push_json_string(&mut line, msg);
    for (key, value) in fields {
        line.push(',');
        push_json_string(&mut line, key);
        line.push(':');
        let text = value.to_string();
        if is_json_number(&text) {
            line.push_str(&text);
        } else {
            push_json_string(&mut line, &text);
        }
    }
    line.push_str("}\n");
    line
}

/// `0`, `200`, `1.5`: digits with no leading zero, at most one inner `.`.
fn is_json_number(text: &str) -> bool {
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole)
        && (whole == "0" || !whole.starts_with('0'))
        && fraction.is_none_or(digits)
        && text.len() <= 18
}

fn push_json_string(line: &mut String, value: &str) {
    line.push('"');
    for c in value.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(line, "\\u{:04x}", c as u32);
            }
            c => line.push(c),
        }
    }
    line.push('"');
}

/// Now as `2026-11-30T04:28:10.123Z`.
pub fn now_rfc3339() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since.as_secs(), since.subsec_millis())
}

fn rfc3339(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(1_796_013_690, 123), "2026-11-30T04:41:30.123Z");
    }

    #[test]
    fn logfmt_values_are_quoted_and_escaped_when_needed() {
        let line = logfmt_line(
            "T",
            Level::Warn,
            "request",
            &[
                ("source", &"GitHub"),
                ("detail", &"a \"b\"\nc=d"),
                ("empty", &""),
                ("status", &401),
            ],
        );
        assert_eq!(
            line,
            "ts=T level=warn msg=request source=GitHub detail=\"a \\\"b\\\"\\nc=d\" empty=\"\" status=401\n"
        );
    }

    #[test]
    fn json_lines_have_the_same_fields_and_keep_numbers() {
        let line = json_line(
            "T",
            Level::Info,
            "request",
            &[
                ("source", &"GitLab"),
                ("hook", &"0123abcd"),
                ("status", &200),
                ("elapsed_ms", &"1.5"),
                ("detail", &"x\"\ny"),
            ],
        );
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ts"], "T");
        assert_eq!(v["level"], "info");
        assert_eq!(v["msg"], "request");
        assert_eq!(v["source"], "GitLab");
        assert_eq!(v["hook"], "0123abcd");
        assert_eq!(v["status"], 200);
        assert_eq!(v["elapsed_ms"], 1.5);
        assert_eq!(v["detail"], "x\"\ny");
        assert!(line.starts_with("{\"ts\":\"T\",\"level\":\"info\",\"msg\":\"request\",\"source\""));
    }

    #[test]
    fn json_numbers_and_strings() {
        for (text, number) in [
            ("0", true),
            ("200", true),
            ("1.5", true),
            ("007", false),
            ("1.", false),
            (".5", false),
            ("1.2.3", false),
            ("-1", false),
            ("12345678901234567890", false),
            ("0123abcd", false),
        ] {
            assert_eq!(is_json_number(text), number, "{text}");
        }
        let mut line = String::new();
        push_json_string(&mut line, "a\u{1}b\u{7f}\\");
        let back: String = serde_json::from_str(&line).unwrap();
        assert_eq!(back, "a\u{1}b\u{7f}\\");
    }

    #[test]
    fn levels_parse_and_order() {
        assert_eq!(Level::parse("warn"), Some(Level::Warn));
        assert_eq!(Level::parse("WARN"), None);
        assert!(Level::Debug < Level::Info && Level::Warn < Level::Error);
        assert_eq!(Format::parse("json"), Some(Format::Json));
        assert_eq!(Format::parse("text"), None);
    }
}
