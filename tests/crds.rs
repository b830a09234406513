//! crds/ and the chart's crds/ hold exactly what `aviary crds` prints: regenerate both with
//! `cargo run --release -- crds | tee crds/aviary.yaml > charts/aviary/crds/aviary.yaml`.

#[test]
fn crds_directories_are_current() {
    let generated = aviary::crd::all_crds_yaml().unwrap();
    for path in ["crds/aviary.yaml", "charts/aviary/crds/aviary.yaml"] {
        let committed =
            std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(
            committed == generated,
            "{path} is stale: run `cargo run --release -- crds | tee crds/aviary.yaml > charts/aviary/crds/aviary.yaml`"
        );
    }
}
