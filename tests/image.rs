//! The controller image: `image/build` makes it with buildah (Debian's package) from scratch,
//! pulling nothing; this test unpacks its OCI layout and runs the binary from the image's own
//! root filesystem as the image's non-root user.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn blob(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

fn json_at(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Builds the image around this test's own binary (no second release build) into `layout`.
fn build(layout: &Path) -> String {
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/image/build"))
        .args(["--binary", env!("CARGO_BIN_EXE_aviary"), "--oci"])
        .arg(layout)
        .output()
        .expect("bash runs image/build");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "image/build failed (buildah is installed by tests/env/testenv build):\n{stderr}"
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Every file of the image, relative to its root, after unpacking its layers in order.
fn unpack(layout: &Path, manifest: &Value, root: &Path) -> Vec<String> {
    std::fs::create_dir_all(root).unwrap();
    for layer in manifest["layers"].as_array().expect("layers") {
        let path = blob(layout, layer["digest"].as_str().unwrap());
        let status = Command::new("tar")
            .args(["-xf"])
            .arg(&path)
            .arg("-C")
            .arg(root)
            .status()
            .unwrap();
        assert!(status.success(), "tar could not unpack {}", path.display());
    }
    let out = Command::new("find")
        .arg(".")
        .args(["-type", "f"])
        .current_dir(root)
        .output()
        .unwrap();
    let mut files: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    files.sort();
    files
}

#[test]
fn the_image_builds_from_scratch_and_its_binary_runs_as_non_root() {
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("image");
    let _ = std::fs::remove_dir_all(&scratch);
    let layout = scratch.join("oci");
    let tag = build(&layout);
    assert!(tag.starts_with("localhost/aviary:"), "{tag}");

    let index = json_at(&layout.join("index.json"));
    let manifest = json_at(&blob(
        &layout,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let config = json_at(&blob(
        &layout,
        manifest["config"]["digest"].as_str().unwrap(),
    ));
    let run = &config["config"];
    assert_eq!(run["User"], "65532:65532", "{run}");
    assert_eq!(run["Entrypoint"][0], "/usr/local/bin/aviary", "{run}");

    let root = scratch.join("rootfs");
    let files = unpack(&layout, &manifest, &root);
    let allowed = |f: &String| {
        f == "./usr/local/bin/aviary"
            || f == "./etc/passwd"
            || f == "./etc/group"
            || f == "./etc/ssl/certs/ca-certificates.crt"
            || f.contains("/lib")
    };
    let extra: Vec<&String> = files.iter().filter(|f| !allowed(f)).collect();
    assert!(
        extra.is_empty(),
        "the image holds more than the binary needs: {extra:?}"
    );
    assert!(!root.join("bin/sh").exists(), "no shell in the image");

    // The binary and the libraries from the image alone, as the image's user.
    let out = Command::new("chroot")
        .arg("--userspec=65532:65532")
        .arg(&root)
        .args(["/usr/local/bin/aviary", "--version"])
        .output()
        .expect("chroot runs (the suite runs as root, as CI does)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        format!("aviary {}", env!("CARGO_PKG_VERSION"))
    );
}
