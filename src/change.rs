//! Flux's `Change`: what fluxd's `POST /v11/notify` takes, and its JSON wire format.
//!
//! The wire format lives here and nowhere else: `{"Kind":"git","Source":{"URL":…,"Branch":…}}`
//! and `{"Kind":"image","Source":{"Name":{"Domain":…,"Image":…}}}`, with exactly those keys
//! (`docs/fluxd.md` §2). Image references are split as fluxd ≥ 1.22 does (§3).

use serde::Serialize;

/// One thing fluxd should look at again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Change {
    /// A push to a git repository: fluxd re-polls it if it is the repo and branch it syncs.
    Git { url: String, branch: String },
    /// A push to an image repository: fluxd refreshes it if a workload uses exactly this name.
    Image(ImageName),
}

/// An image repository name as fluxd's `image.Name` holds it: no tag, no digest, no
/// normalisation (no `docker.io`, no `library/`, case kept).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageName {
    pub domain: String,
    pub image: String,
}

/// Why an image reference could not be parsed (answered with 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRefError {
    Empty,
    /// A leading or trailing `/`.
    Slash,
    /// `@sha256:` with nothing before or after it.
    EmptyDigest,
    /// `name:` or `:tag`.
    EmptyTag,
    /// More than one `:` left after the digest is split off.
    TooManyColons,
}

impl std::fmt::Display for ImageRefError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ImageRefError::Empty => "image reference is empty",
            ImageRefError::Slash => "image reference starts or ends with /",
            ImageRefError::EmptyDigest => {
                "image reference has an empty name or digest around @sha256:"
            }
            ImageRefError::EmptyTag => "image reference has an empty name or tag around :",
            ImageRefError::TooManyColons => {
                "image reference has more than one : outside its digest"
            }
        })
    }
}

impl std::error::Error for ImageRefError {}

impl ImageName {
    /// Parses a pushed image reference exactly as fluxd ≥ 1.22's `image.ParseRef` does, keeping
    /// only the name.
    pub fn parse(reference: &str) -> Result<ImageName, ImageRefError> {
        if reference.is_empty() {
            return Err(ImageRefError::Empty);
        }
        if reference.starts_with('/') || reference.ends_with('/') {
            return Err(ImageRefError::Slash);
        }
        let elements: Vec<&str> = reference.split('/').collect();
        let (domain, rest) = match elements.as_slice() {
            [first, second] if is_domain(first) => (*first, *second),
            [_] | [_, _] => ("", reference),
            // Three or more elements: the first is the domain, unvalidated, as in fluxd.
            _ => reference.split_once('/').unwrap_or(("", reference)),
        };
        let image = match rest.split_once("@sha256:") {
            Some((name, digest)) if name.is_empty() || digest.is_empty() => {
                return Err(ImageRefError::EmptyDigest)
            }
            Some((name, _digest)) => name,
            None => rest,
        };
        let image: &str = match image.split(':').collect::<Vec<_>>().as_slice() {
            [name] => name,
            [name, tag] if name.is_empty() || tag.is_empty() => {
                return Err(ImageRefError::EmptyTag)
            }
            [name, _tag] => name,
            _ => return Err(ImageRefError::TooManyColons),
        };
        Ok(ImageName {
            domain: domain.to_owned(),
            image: image.to_owned(),
        })
    }
}

/// fluxd's domain rule, `localhost|(C([.]C)+)(:[0-9]+)?` with `C = [a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`,
/// matched unanchored (Go's `MatchString`): true iff the text contains `localhost` or an ASCII
/// alphanumeric, a `.`, and an ASCII alphanumeric in a row.
fn is_domain(element: &str) -> bool {
    element.contains("localhost")
        || element
            .as_bytes()
            .windows(3)
            .any(|w| w[0].is_ascii_alphanumeric() && w[1] == b'.' && w[2].is_ascii_alphanumeric())
}

impl Change {
    /// A git change from a pushed ref: `refs/heads/` is dropped, tags keep `refs/tags/…`.
    pub fn git(url: impl Into<String>, git_ref: &str) -> Change {
        let branch = git_ref.strip_prefix("refs/heads/").unwrap_or(git_ref);
        Change::Git {
            url: url.into(),
            branch: branch.to_owned(),
        }
    }

    /// An image change from a pushed reference (`host/repo:tag`, `repo@sha256:…`, …).
    pub fn image(reference: &str) -> Result<Change, ImageRefError> {
        ImageName::parse(reference).map(Change::Image)
    }

    /// The compact JSON body of one notify call.
    pub fn to_json(&self) -> Vec<u8> {
        let wire = match self {
            Change::Git { url, branch } => Wire {
                kind: "git",
                source: WireSource::Git { url, branch },
            },
            Change::Image(name) => Wire {
                kind: "image",
                source: WireSource::Image {
                    name: WireName {
                        domain: &name.domain,
                        image: &name.image,
                    },
                },
            },
        };
        // Serialising plain strings into a Vec cannot fail.
        serde_json::to_vec(&wire).unwrap_or_default()
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Git { url, branch } => write!(f, "git {url} {branch}"),
            Change::Image(name) if name.domain.is_empty() => write!(f, "image {}", name.image),
            Change::Image(name) => write!(f, "image {}/{}", name.domain, name.image),
        }
    }
}

#[derive(Serialize)]
struct Wire<'a> {
    #[serde(rename = "Kind")]
    kind: &'static str,
    #[serde(rename = "Source")]
    source: WireSource<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum WireSource<'a> {
    Git {
        #[serde(rename = "URL")]
        url: &'a str,
        #[serde(rename = "Branch")]
        branch: &'a str,
    },
    Image {
        #[serde(rename = "Name")]
        name: WireName<'a>,
    },
}

#[derive(Serialize)]
struct WireName<'a> {
    #[serde(rename = "Domain")]
    domain: &'a str,
    #[serde(rename = "Image")]
    image: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_ref_loses_refs_heads_and_tags_keep_their_prefix() {
        struct Row {
            git_ref: &'static str,
            branch: &'static str,
        }
        let cases = [
            Row {
                git_ref: "refs/heads/main",
                branch: "main",
            },
            Row {
                git_ref: "refs/heads/feature/x",
                branch: "feature/x",
            },
            Row {
                git_ref: "refs/tags/v1.2.3",
                branch: "refs/tags/v1.2.3",
            },
            Row {
                git_ref: "main",
                branch: "main",
            },
            Row {
                git_ref: "",
                branch: "",
            },
        ];
        for Row { git_ref, branch } in cases {
            assert_eq!(
                Change::git("git@h:o/r.git", git_ref),
                Change::Git {
                    url: "git@h:o/r.git".into(),
                    branch: branch.into()
                },
                "ref {git_ref:?}"
            );
        }
    }

    #[test]
    fn git_json_has_exactly_the_contract_keys() {
        let json = Change::git("git@github.com:org/repo.git", "refs/heads/main").to_json();
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            r#"{"Kind":"git","Source":{"URL":"git@github.com:org/repo.git","Branch":"main"}}"#
        );
    }

    #[test]
    fn image_json_has_exactly_the_contract_keys() {
        let json = Change::image("quay.io/org/app:1.0").unwrap().to_json();
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            r#"{"Kind":"image","Source":{"Name":{"Domain":"quay.io","Image":"org/app"}}}"#
        );
    }

    type Parsed = Result<(String, String), ImageRefError>;

    /// One row of the image reference table.
    struct Row<'a> {
        input: &'a str,
        want: Parsed,
    }

    /// Every row of the contract's table (fluxd ≥ 1.22 column), then edge cases of our own.
    #[test]
    fn image_reference_table() {
        use ImageRefError::*;
        let ok =
            |domain: &str, image: &str| -> Parsed { Ok((domain.to_owned(), image.to_owned())) };
        let long = format!("registry.example.com/{}:tag", "a/".repeat(5000) + "z");
        let long_image = "a/".repeat(5000) + "z";
        let cases: Vec<Row> = vec![
            Row { input: "alpine", want: ok("", "alpine") },
            Row { input: "alpine:3.10", want: ok("", "alpine") },
            Row { input: "library/alpine", want: ok("", "library/alpine") },
            Row { input: "docker.io/alpine", want: ok("docker.io", "alpine") },
            Row { input: "docker.io/library/alpine", want: ok("docker.io", "library/alpine") },
            Row { input: "index.docker.io/library/alpine:latest", want: ok("index.docker.io", "library/alpine") },
            Row { input: "registry-1.docker.io/foo/bar", want: ok("registry-1.docker.io", "foo/bar") },
            Row { input: "svendowideit/testhook", want: ok("", "svendowideit/testhook") },
            Row { input: "quay.io/hiddeco/foo", want: ok("quay.io", "hiddeco/foo") },
            Row { input: "demo.goharbor.io/test123/alpine:3.10", want: ok("demo.goharbor.io", "test123/alpine") },
            Row { input: "us.gcr.io/am/am.kebab.api:test", want: ok("us.gcr.io", "am/am.kebab.api") },
            Row { input: "localhost/hello:v1.1", want: ok("localhost", "hello") },
            Row { input: "localhost:5000/path/to/repo/alpine:mytag", want: ok("localhost:5000", "path/to/repo/alpine") },
            Row { input: "example.com:80/x", want: ok("example.com:80", "x") },
            Row { input: "myhost:5000/foo", want: ok("", "myhost") },
            Row { input: "notlocalhost/foo", want: ok("notlocalhost", "foo") },
            Row { input: "LOCALHOST/foo", want: ok("", "LOCALHOST/foo") },
            Row { input: "foo/bar/baz", want: ok("foo", "bar/baz") },
            Row { input: "Quay.IO/My/Repo:TAG", want: ok("Quay.IO", "My/Repo") },
            Row { input: "a//b", want: ok("a", "/b") },
            Row { input: " alpine", want: ok("", " alpine") },
            Row { input: "kennethreitz/httpbin@sha256:599fe5a4e1b4e5ca6d0f3d4b2e2a8e7c1c3f0b6d9e8a7c6b5a4f3e2d1c0b9a8f", want: ok("", "kennethreitz/httpbin") },
            Row { input: "quay.io/foo/bar@sha256:abcd", want: ok("quay.io", "foo/bar") },
            Row { input: "alpine:3.10@sha256:abcd", want: ok("", "alpine") },
            Row { input: "@sha256:abc", want: Err(EmptyDigest) },
            Row { input: "alpine@sha512:abcd", want: ok("", "alpine@sha512") },
            Row { input: "a:b:c", want: Err(TooManyColons) },
            Row { input: "quay.io/foo:bar:baz", want: Err(TooManyColons) },
            Row { input: "", want: Err(Empty) },
            Row { input: ":tag", want: Err(EmptyTag) },
            Row { input: "alpine:", want: Err(EmptyTag) },
            Row { input: "alpine@sha256:", want: Err(EmptyDigest) },
            Row { input: "/leading/slash", want: Err(Slash) },
            Row { input: "trailing/slash/", want: Err(Slash) },
            // Our own edge cases.
            Row { input: "127.0.0.1:5000/team/app:1", want: ok("127.0.0.1:5000", "team/app") },
            Row { input: "10.0.0.1/app", want: ok("10.0.0.1", "app") },
            Row { input: "[::1]:5000/app", want: Err(TooManyColons) },
            Row { input: "localhost:5000/app", want: ok("localhost:5000", "app") },
            Row { input: "localhost/app@sha256:00", want: ok("localhost", "app") },
            Row { input: "registry:5000/app:1", want: Err(TooManyColons) },
            Row { input: "GCR.IO/Project/App", want: ok("GCR.IO", "Project/App") },
            Row { input: "ghcr.io/acme/ünïcödé:1", want: ok("ghcr.io", "acme/ünïcödé") },
            Row { input: "ünï.cödé/app", want: ok("", "ünï.cödé/app") },
            Row { input: "a.b/c", want: ok("a.b", "c") },
            Row { input: "a./b", want: ok("", "a./b") },
            Row { input: "-.-/b", want: ok("", "-.-/b") },
            Row { input: "x/", want: Err(Slash) },
            Row { input: "/", want: Err(Slash) },
            Row { input: "app@sha256:abc:1", want: ok("", "app") },
            Row { input: "app:1@sha256:abc", want: ok("", "app") },
            Row { input: "app@sha256:x@sha256:y", want: ok("", "app") },
            Row { input: &long, want: ok("registry.example.com", &long_image) },
        ];
        for row in cases {
            let got = ImageName::parse(row.input).map(|n| (n.domain, n.image));
            assert_eq!(got, row.want, "input {:?}", row.input);
        }
    }

    #[test]
    fn json_escapes_odd_characters() {
        let json = Change::git("git@h:o/\"r\".git", "refs/heads/ü\n").to_json();
        let back: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(back["Source"]["URL"], "git@h:o/\"r\".git");
        assert_eq!(back["Source"]["Branch"], "ü\n");
    }
}
