//! Replays the fuzz corpus kept in `tests/fuzz/corpus/<target>/` through the same entry points
//! the fuzz targets use, on stable: every input that ever found a bug stays a regression test.

use std::path::Path;

#[path = "fuzz/harness.rs"]
mod harness;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target}: {} panics", path.display());
        count += 1;
    }
    assert!(
        count >= 5,
        "{target}: only {count} corpus files in {}",
        dir.display()
    );
}

#[test]
fn http_request_corpus() {
    replay("http_request", harness::http_request);
    replay("http_request", harness::http_request_long);
}

#[test]
fn source_payload_corpus() {
    replay("source_payload", harness::source_payload);
}

#[test]
fn image_ref_corpus() {
    replay("image_ref", harness::image_ref);
}

#[test]
fn signature_header_corpus() {
    replay("signature_header", harness::signature_header);
}

#[test]
fn standard_webhooks_corpus() {
    replay("standard_webhooks", harness::standard_webhooks);
}

#[test]
fn generic_changes_corpus() {
    replay("generic_changes", harness::generic_changes);
}

#[test]
fn config_yaml_corpus() {
    replay("config_yaml", harness::config_yaml);
}

/// One replay per provider payload target (`tests/fuzz/fuzz_targets/payload_*.rs`).
macro_rules! payload_corpus {
    ($($test:ident => $target:literal, $source:ident;)+) => {
        $(
            #[test]
            fn $test() {
                replay($target, |data| {
                    harness::payload_of(flux_recv::sources::Source::$source, data)
                });
            }
        )+
    };
}

payload_corpus! {
    distribution_corpus => "payload_distribution", Distribution;
    zot_corpus => "payload_zot", Zot;
    acr_corpus => "payload_acr", AzureContainerRegistry;
    artifactory_corpus => "payload_artifactory", Artifactory;
    gitea_corpus => "payload_gitea", Gitea;
    github_corpus => "payload_github", GitHub;
    harbor_corpus => "payload_harbor", Harbor;
    bitbucket_cloud_corpus => "payload_bitbucket_cloud", BitbucketCloud;
    bitbucket_server_corpus => "payload_bitbucket_server", BitbucketServer;
    azure_devops_corpus => "payload_azure_devops", AzureDevOps;
}
