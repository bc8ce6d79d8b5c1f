//! The README's tables follow the code: the sources table lists exactly the registry's sources,
//! the flags table exactly the flag table's flags, and the replies table every outcome word.

use flux_recv::cli::{FLAGS, SUBCOMMAND_FLAGS};
use flux_recv::sources::Source;
use flux_recv::verdict::OUTCOMES;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// The first cell of every row of the table whose header row starts with `header`.
fn first_cells(text: &str, header: &str) -> Vec<String> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with(header));
    assert!(lines.next().is_some(), "no table headed {header:?}");
    lines
        .skip(1) // the |---| line
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.split('|').nth(1).unwrap_or("").trim().to_owned())
        .collect()
}

#[test]
fn the_sources_table_lists_every_source_once() {
    // A row may say more after the name (`Gitea` (also Forgejo and Gogs)).
    let rows: Vec<String> = first_cells(&readme(), "| config `source:` |")
        .iter()
        .map(|cell| cell.split_whitespace().next().unwrap_or("").to_owned())
        .collect();
    let names: Vec<String> = Source::ALL
        .iter()
        .map(|s| format!("`{}`", s.name()))
        .collect();
    assert_eq!(rows, names);
}

#[test]
fn the_flags_table_is_the_flag_table() {
    let rows = first_cells(&readme(), "| flag | default | meaning |");
    let flags: Vec<String> = FLAGS
        .iter()
        .filter(|f| !SUBCOMMAND_FLAGS.contains(&f.name))
        .map(|f| format!("`{}`", format!("{} {}", f.name, f.placeholder).trim_end()))
        .collect();
    let mut rows_sorted = rows.clone();
    rows_sorted.sort();
    let mut flags_sorted = flags.clone();
    flags_sorted.sort();
    assert_eq!(
        rows_sorted, flags_sorted,
        "README flags {rows:?}\nflag table {flags:?}"
    );
}

#[test]
fn the_replies_table_names_every_outcome() {
    let text = readme();
    let cells: Vec<String> = text
        .lines()
        .skip_while(|l| !l.starts_with("| status | outcome | when |"))
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.split('|').nth(2).unwrap_or("").to_owned())
        .collect();
    for outcome in OUTCOMES {
        assert!(
            cells.iter().any(|c| c.contains(&format!("`{outcome}`"))),
            "the replies table lacks {outcome}"
        );
    }
}

#[test]
fn the_setup_guide_has_a_section_per_source() {
    let guide =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/providers.md")).unwrap();
    let sections: Vec<&str> = guide
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .collect();
    let names: Vec<&str> = Source::ALL.iter().map(|s| s.name()).collect();
    assert_eq!(sections, names);
}
