//! crds/ holds exactly what `aviary crds` prints: regenerate with
//! `cargo run --release -- crds > crds/aviary.yaml`.

#[test]
fn crds_directory_is_current() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/aviary.yaml")).unwrap();
    let generated = aviary::crd::all_crds_yaml().unwrap();
    assert!(
        committed == generated,
        "crds/aviary.yaml is stale: run `cargo run --release -- crds > crds/aviary.yaml`"
    );
}
