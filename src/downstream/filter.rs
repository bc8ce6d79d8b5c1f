//! Which changes a downstream wants: globs over image names, git URLs and branches.
//!
//! A downstream without filters wants every change. With filters, it wants an image change when
//! `images` is set and one of its globs matches `domain/image` (or the bare image when the name
//! has no domain), and a git change when `git` or `branches` is set and every one that is set
//! matches: `git` globs match the URL as `host/path` whatever its scheme or user
//! (`git@github.com:org/infra.git`, `ssh://git@github.com/org/infra.git` and
//! `https://github.com/org/infra.git` are all `github.com/org/infra.git`), `branches` globs the
//! branch as fluxd sees it (`main`, `refs/tags/v1.0`).
//!
//! Globs: `*` any run of characters (`/` too), `?` one character, `[abc]`, `[a-z]` and `[!a-z]`
//! one character of (or not of) a set, `\` takes the next character literally.

use crate::change::Change;

/// A parsed glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(char),
    AnyOne,
    AnyRun,
    Set {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Glob {
    /// Parses a glob; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Glob, String> {
        if text.is_empty() {
            return Err("is empty".into());
        }
        let mut parts = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            parts.push(match c {
                '*' => Part::AnyRun,
                '?' => Part::AnyOne,
                '\\' => Part::Literal(chars.next().ok_or("ends in a lone \\")?),
                '[' => parse_set(&mut chars)?,
                c => Part::Literal(c),
            });
        }
        Ok(Glob {
            text: text.to_owned(),
            parts,
        })
    }

    /// Whether the whole of `input` matches.
    pub fn matches(&self, input: &str) -> bool {
        let input: Vec<char> = input.chars().collect();
        matches_at(&self.parts, &input)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

fn parse_set(chars: &mut std::str::Chars<'_>) -> Result<Part, String> {
    let mut negated = false;
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = chars.next().ok_or("has a [ without its ]")?;
        match c {
            '!' | '^' if first && !negated => {
                negated = true;
                continue;
            }
            ']' if !first => break,
            _ => {}
        }
        first = false;
        let lo = if c == '\\' {
            chars.next().ok_or("ends in a lone \\")?
        } else {
            c
        };
        let mut lookahead = chars.clone();
        if lookahead.next() == Some('-') && lookahead.clone().next().is_some_and(|h| h != ']') {
            let hi = match lookahead.next() {
                Some('\\') => lookahead.next().ok_or("ends in a lone \\")?,
                Some(hi) => hi,
                None => return Err("has a [ without its ]".into()),
            };
            if hi < lo {
                return Err(format!("has the reversed range {lo}-{hi}"));
            }
            *chars = lookahead;
            ranges.push((lo, hi));
        } else {
            ranges.push((lo, lo));
        }
    }
    Ok(Part::Set { negated, ranges })
}

/// Backtracking match with the classic single-star memory: linear for one `*`, and never worse
/// than quadratic in the input for several.
fn matches_at(parts: &[Part], input: &[char]) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < input.len() {
        let step = match parts.get(p) {
            Some(Part::AnyRun) => {
                star = Some((p, i));
                p += 1;
                continue;
            }
            Some(Part::AnyOne) => true,
            Some(Part::Literal(c)) => *c == input[i],
            Some(Part::Set { negated, ranges }) => {
                let inside = ranges
                    .iter()
                    .any(|(lo, hi)| (*lo..=*hi).contains(&input[i]));
                inside != *negated
            }
            None => false,
        };
        if step {
            p += 1;
            i += 1;
        } else if let Some((star_p, star_i)) = star {
            p = star_p + 1;
            i = star_i + 1;
            star = Some((star_p, star_i + 1));
        } else {
            return false;
        }
    }
    parts[p..].iter().all(|part| *part == Part::AnyRun)
}

/// A downstream's filters; all empty means every change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub images: Vec<Glob>,
    pub git: Vec<Glob>,
    pub branches: Vec<Glob>,
}

impl Filter {
    /// Whether a downstream with this filter wants `change`.
    pub fn wants(&self, change: &Change) -> bool {
        if self.images.is_empty() && self.git.is_empty() && self.branches.is_empty() {
            return true;
        }
        let any = |globs: &[Glob], text: &str| globs.iter().any(|g| g.matches(text));
        match change {
            Change::Image(name) => {
                let full = if name.domain.is_empty() {
                    name.image.clone()
                } else {
                    format!("{}/{}", name.domain, name.image)
                };
                any(&self.images, &full)
            }
            Change::Git { url, branch } => {
                if self.git.is_empty() && self.branches.is_empty() {
                    return false;
                }
                (self.git.is_empty() || any(&self.git, &host_and_path(url)))
                    && (self.branches.is_empty() || any(&self.branches, branch))
            }
        }
    }
}

/// A git URL as `host/path`, without scheme or user: what `git:` globs match.
pub fn host_and_path(url: &str) -> String {
    // `scheme://[user@]host[:port]/path`, or scp-like `[user@]host:path`.
    let (rest, end_of_host) = match url.split_once("://") {
        Some((_, rest)) => (rest, '/'),
        None => (url, ':'),
    };
    let (host, path) = rest.split_once(end_of_host).unwrap_or((rest, ""));
    let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
    format!("{host}/{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(text: &str) -> Glob {
        Glob::parse(text).unwrap()
    }

    #[test]
    fn glob_table() {
        for (pattern, input, matched) in [
            (
                "mirror.internal:5000/team-a/*",
                "mirror.internal:5000/team-a/app",
                true,
            ),
            (
                "mirror.internal:5000/team-a/*",
                "mirror.internal:5000/team-a/x/y",
                true,
            ),
            (
                "mirror.internal:5000/team-a/*",
                "mirror.internal:5000/team-b/app",
                false,
            ),
            ("*", "", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "acb", false),
            ("v?.*", "v1.2", true),
            ("v?.*", "v10.2", false),
            ("release-[0-9]*", "release-3.1", true),
            ("release-[0-9]*", "release-x", false),
            ("[!m]ain", "main", false),
            ("[!m]ain", "rain", true),
            ("[]]", "]", true),
            ("[\\[-\\]]", "]", true),
            ("[\\[-\\]]", "\\", true),
            ("[\\[-\\]]", "a", false),
            ("a\\*", "a*", true),
            ("a\\*", "ab", false),
            ("main", "main", true),
            ("main", "mainline", false),
            ("ünï*", "ünïcödé", true),
        ] {
            assert_eq!(glob(pattern).matches(input), matched, "{pattern} ~ {input}");
        }
    }

    #[test]
    fn malformed_globs_are_refused() {
        for bad in ["", "[abc", "a\\", "[z-a]", "[!"] {
            assert!(Glob::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn many_stars_stay_fast() {
        let pattern = glob(&"*a".repeat(20));
        let input = "a".repeat(19) + &"b".repeat(5000);
        assert!(!pattern.matches(&input));
    }

    #[test]
    fn git_urls_match_as_host_and_path() {
        for (url, expected) in [
            ("git@github.com:org/infra.git", "github.com/org/infra.git"),
            (
                "ssh://git@github.com/org/infra.git",
                "github.com/org/infra.git",
            ),
            (
                "https://github.com/org/infra.git",
                "github.com/org/infra.git",
            ),
            (
                "ssh://git@bitbucket.example.com:7999/plat/x.git",
                "bitbucket.example.com:7999/plat/x.git",
            ),
            ("https://github.com/org/a@b.git", "github.com/org/a@b.git"),
            (
                "git@gitlab.com:group/sub/repo.git",
                "gitlab.com/group/sub/repo.git",
            ),
        ] {
            assert_eq!(host_and_path(url), expected, "{url}");
        }
    }

    #[test]
    fn filters_route_by_kind() {
        let git = Change::git("git@github.com:org/infra.git", "refs/heads/main");
        let other = Change::git("git@github.com:org/app.git", "refs/heads/main");
        let image = Change::image("mirror.internal:5000/team-a/app:1").unwrap();
        assert!(Filter::default().wants(&git) && Filter::default().wants(&image));
        let images_only = Filter {
            images: vec![glob("mirror.internal:5000/team-a/*")],
            ..Filter::default()
        };
        assert!(images_only.wants(&image) && !images_only.wants(&git));
        let infra = Filter {
            git: vec![glob("*/org/infra*")],
            ..Filter::default()
        };
        assert!(infra.wants(&git) && !infra.wants(&other) && !infra.wants(&image));
        let infra_release = Filter {
            git: vec![glob("*/org/infra*")],
            branches: vec![glob("release/*")],
            ..Filter::default()
        };
        assert!(!infra_release.wants(&git));
        assert!(infra_release.wants(&Change::git("git@github.com:org/infra.git", "release/1")));
    }
}
