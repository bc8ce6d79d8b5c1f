//! Log lines on stderr, one write per line so lines from different threads never interleave:
//! logfmt by default (`ts=… level=… msg=… key=value`), or one JSON object per line with the same
//! fields (`--log-format json`), filtered by `--log-level`. Nothing here knows about keys:
//! callers pass only what may be shown (source, an 8-hex digest prefix, outcomes), never a key,
//! a MAC or a full digest.

use std::borrow::Cow;
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

/// Where lines go instead of stderr, when set (the tests' capture).
static SINK: std::sync::OnceLock<fn(&str)> = std::sync::OnceLock::new();

/// Sends every line to `sink` instead of stderr, for the rest of the process. The test kit uses
/// it so that servers' lines are shown with a failing test only; the first call wins.
pub fn set_sink(sink: fn(&str)) {
    let _ = SINK.set(sink);
}

/// Sets the process's log format and lowest level shown.
pub fn configure(format: Format, level: Level) {
    FORMAT.store(u8::from(format == Format::Json), Ordering::Relaxed);
    MIN_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether lines of this level are written.
pub fn enabled(level: Level) -> bool {
    level as u8 >= MIN_LEVEL.load(Ordering::Relaxed)
}

/// One field's value. Its JSON type is chosen by the caller for the field, never guessed from
/// the text, so a field has the same type on every line.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Text(Cow<'a, str>),
    Int(u64),
    Float(f64),
}

/// Any `Display` value as text.
pub fn text(value: impl std::fmt::Display) -> Value<'static> {
    Value::Text(Cow::Owned(value.to_string()))
}

/// Milliseconds with one decimal, as a number.
pub fn millis(duration: std::time::Duration) -> Value<'static> {
    Value::Float((duration.as_secs_f64() * 10_000.0).round() / 10.0)
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Value<'a> {
        Value::Text(Cow::Borrowed(s))
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(s: &'a String) -> Value<'a> {
        Value::Text(Cow::Borrowed(s))
    }
}

impl From<String> for Value<'static> {
    fn from(s: String) -> Value<'static> {
        Value::Text(Cow::Owned(s))
    }
}

impl From<u64> for Value<'static> {
    fn from(n: u64) -> Value<'static> {
        Value::Int(n)
    }
}

impl From<usize> for Value<'static> {
    fn from(n: usize) -> Value<'static> {
        Value::Int(n as u64)
    }
}

impl From<u16> for Value<'static> {
    fn from(n: u16) -> Value<'static> {
        Value::Int(u64::from(n))
    }
}

impl From<f64> for Value<'static> {
    fn from(x: f64) -> Value<'static> {
        Value::Float(x)
    }
}

/// A line's fields, in order.
pub type Fields<'a> = [(&'a str, Value<'a>)];

/// Writes one line: ts, level, msg, then `fields` in order.
pub fn emit(level: Level, msg: &str, fields: &Fields<'_>) {
    if !enabled(level) {
        return;
    }
    let ts = now_rfc3339();
    let line = if FORMAT.load(Ordering::Relaxed) == 1 {
        json_line(&ts, level, msg, fields)
    } else {
        logfmt_line(&ts, level, msg, fields)
    };
    match SINK.get() {
        Some(sink) => sink(&line),
        // A closed stderr must not take the server down.
        None => {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }
}

pub fn info(msg: &str, fields: &Fields<'_>) {
    emit(Level::Info, msg, fields);
}

pub fn warn(msg: &str, fields: &Fields<'_>) {
    emit(Level::Warn, msg, fields);
}

pub fn error(msg: &str, fields: &Fields<'_>) {
    emit(Level::Error, msg, fields);
}

fn logfmt_line(ts: &str, level: Level, msg: &str, fields: &Fields<'_>) -> String {
    // A request line is about 230 bytes: one allocation, not a second to grow it.
    let mut line = String::with_capacity(320);
    let _ = write!(line, "ts={ts} level={} msg=", level.as_str());
    push_logfmt_value(&mut line, msg);
    for (key, value) in fields {
        line.push(' ');
        line.push_str(key);
        line.push('=');
        match value {
            Value::Text(text) => push_logfmt_value(&mut line, text),
            Value::Int(n) => {
                let _ = write!(line, "{n}");
            }
            Value::Float(x) => {
                let _ = write!(line, "{x}");
            }
        }
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
            c if hidden(c) => {
                let _ = write!(line, "\\u{{{:x}}}", c as u32);
            }
            c => line.push(c),
        }
    }
    line.push('"');
}

/// Characters a sender-chosen string must not put raw into a log line: controls, the Unicode
/// line and paragraph separators (a new line to many log viewers), and format characters
/// (category Cf: bidi overrides and isolates that reorder what a reader sees, zero-width
/// characters, the BOM), which would let a payload forge or disguise a line.
fn hidden(c: char) -> bool {
    const FORMAT: [(u32, u32); 21] = [
        (0x00AD, 0x00AD),
        (0x0600, 0x0605),
        (0x061C, 0x061C),
        (0x06DD, 0x06DD),
        (0x070F, 0x070F),
        (0x0890, 0x0891),
        (0x08E2, 0x08E2),
        (0x180E, 0x180E),
        (0x200B, 0x200F),
        (0x2028, 0x202E),
        (0x2060, 0x2064),
        (0x2066, 0x206F),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0001, 0xE0001),
        (0xE0020, 0xE007F),
    ];
    let n = c as u32;
    c.is_control() || FORMAT.iter().any(|&(low, high)| (low..=high).contains(&n))
}

/// A JSON string written by serde_json with the [`hidden`] characters it leaves raw (all but
/// the controls) escaped as `\uXXXX` too.
fn push_json_string(line: &mut Vec<u8>, text: &str) {
    let start = line.len();
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *line, text);
    if !text.chars().any(|c| hidden(c) && !c.is_control()) {
        return;
    }
    let written = String::from_utf8_lossy(&line[start..]).into_owned();
    line.truncate(start);
    let mut units = [0u16; 2];
    for c in written.chars() {
        if hidden(c) {
            for unit in c.encode_utf16(&mut units) {
                line.extend_from_slice(format!("\\u{unit:04x}").as_bytes());
            }
        } else {
            let mut bytes = [0u8; 4];
            line.extend_from_slice(c.encode_utf8(&mut bytes).as_bytes());
        }
    }
}

/// The same fields, in the same order, as one JSON object; strings and numbers are written by
/// serde_json.
fn json_line(ts: &str, level: Level, msg: &str, fields: &Fields<'_>) -> String {
    let mut line = Vec::with_capacity(384);
    let head = [("ts", ts), ("level", level.as_str()), ("msg", msg)];
    let pairs = head
        .iter()
        .map(|(k, v)| (*k, Value::from(*v)))
        .chain(fields.iter().cloned());
    for (i, (key, value)) in pairs.enumerate() {
        line.push(if i == 0 { b'{' } else { b',' });
        // Writing strings and numbers into a Vec cannot fail.
        push_json_string(&mut line, key);
        line.push(b':');
        let _ = match &value {
            Value::Text(text) => {
                push_json_string(&mut line, text);
                Ok(())
            }
            Value::Int(n) => serde_json::to_writer(&mut line, n),
            Value::Float(x) => serde_json::to_writer(&mut line, x),
        };
    }
    line.extend_from_slice(b"}\n");
    String::from_utf8_lossy(&line).into_owned()
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
                ("source", "GitHub".into()),
                ("detail", "a \"b\"\nc=d".into()),
                ("empty", "".into()),
                ("status", 401u16.into()),
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
                ("source", "GitLab".into()),
                ("hook", "0123abcd".into()),
                ("status", 200u16.into()),
                ("elapsed_ms", 1.5.into()),
                ("detail", "x\"\ny\u{1}\u{7f}\\".into()),
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
        assert_eq!(v["detail"], "x\"\ny\u{1}\u{7f}\\");
        assert!(line.starts_with("{\"ts\":\"T\",\"level\":\"info\",\"msg\":\"request\",\"source\""));
    }

    /// A field's JSON type is the field's, whatever its text: an all-digit digest prefix or
    /// delivery id stays a string.
    #[test]
    fn text_that_looks_like_a_number_stays_a_string() {
        let line = json_line(
            "T",
            Level::Info,
            "request",
            &[
                ("hook", "12345678".into()),
                ("delivery", text(4242)),
                ("changes", 2usize.into()),
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["hook"], "12345678");
        assert_eq!(v["delivery"], "4242");
        assert_eq!(v["changes"], 2);
    }

    /// Line and paragraph separators, bidi overrides and other format characters from a
    /// payload reach neither log format raw, and read back as the same text.
    #[test]
    fn separators_and_format_characters_are_escaped_in_both_formats() {
        let sneaky = "main\u{2028}ts=0 level=info msg=forged\u{2029}\u{202e}gpj.exe\u{200b}\u{feff}\u{e0041}";
        let fields = [("ref", Value::from(sneaky))];
        let logfmt = logfmt_line("T", Level::Info, "request", &fields);
        let json = json_line("T", Level::Info, "request", &fields);
        for line in [&logfmt, &json] {
            assert!(line.is_ascii(), "{line}");
            assert_eq!(line.matches('\n').count(), 1);
        }
        assert!(logfmt.contains("main\\u{2028}ts=0"), "{logfmt}");
        assert!(
            logfmt.contains("\\u{202e}gpj.exe\\u{200b}\\u{feff}\\u{e0041}"),
            "{logfmt}"
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["ref"], sneaky);
        assert!(
            json.contains("\\u2028") && json.contains("\\udb40\\udc41"),
            "{json}"
        );
        // Ordinary non-ASCII text is kept as it is.
        let plain = json_line("T", Level::Info, "m", &[("name", "café ✓".into())]);
        assert!(plain.contains("café ✓"));
    }

    #[test]
    fn millis_round_to_one_decimal() {
        assert_eq!(
            millis(std::time::Duration::from_micros(8_649)),
            Value::Float(8.6)
        );
        assert_eq!(
            logfmt_line(
                "T",
                Level::Info,
                "m",
                &[("ms", millis(std::time::Duration::from_millis(3)))]
            ),
            "ts=T level=info msg=m ms=3\n"
        );
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
