use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
}

#[test]
fn flags_beat_file_beats_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("topk.toml");
    std::fs::write(&file, "partitions = 4\nflush_interval_ms = 2000\nfsync = \"never\"\n").unwrap();
    let cli = Cli::parse_from(["topk", "--partitions", "2"]);
    let cfg = cli.settings.over_file(Some(&file)).unwrap();
    assert_eq!(cfg.log.partitions, 2, "flag wins over file");
    assert_eq!(cfg.aggregator.flush_interval, Duration::from_secs(2), "file wins over default");
    assert_eq!(cfg.log.fsync, FsyncPolicy::Never);
    assert_eq!(cfg.aggregator.max_entries, 500_000, "default");
    assert_eq!(cfg.listen.to_string(), "127.0.0.1:8080");
}

#[test]
fn unknown_keys_and_bad_values_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("topk.toml");
    std::fs::write(&file, "partitons = 4\n").unwrap();
    let err = format!("{:#}", Settings::default().over_file(Some(&file)).unwrap_err());
    assert!(err.contains("unknown field: found `partitons`"), "{err}");
    std::fs::write(&file, "fsync = \"sometimes\"\n").unwrap();
    let err = format!("{:#}", Settings::default().over_file(Some(&file)).unwrap_err());
    assert!(err.contains("unknown fsync policy \"sometimes\""), "{err}");
    let err = Settings { partitions: Some(0), ..Settings::default() }.over_file(None).unwrap_err();
    assert!(err.to_string().contains("partitions must be between 1 and 1024"), "{err}");
    let bad = |list: &str| {
        let s = Settings { partitions: Some(4), aggregate_partitions: Some(list.into()), ..Settings::default() };
        s.over_file(None).unwrap_err().to_string()
    };
    assert!(bad("2-5").contains("\"2-5\" is not within 0-3"), "{}", bad("2-5"));
    assert!(bad("x").contains("\"x\" in \"x\" is not a partition number"), "{}", bad("x"));
}

#[test]
fn kafka_properties_come_from_the_file_and_variables_win() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("topk.toml");
    std::fs::write(
        &file,
        "kafka_brokers = \"k:9092\"\n[kafka_properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.password\" = \"old\"\n",
    )
    .unwrap();
    let cfg = Settings::default().over_file(Some(&file)).unwrap();
    let kafka = cfg.kafka.unwrap();
    assert!(kafka.properties.contains(&("security.protocol".into(), "SASL_SSL".into())));
    assert!(!format!("{kafka:?}").contains("old"), "secrets stay out of Debug: {kafka:?}");
    let file_props = BTreeMap::from([("sasl.password".to_string(), "old".to_string())]);
    let env = [
        ("TOPK_KAFKA_PROPERTY_SASL_PASSWORD".to_string(), "new".to_string()),
        ("TOPK_KAFKA_PROPERTY_SSL_CA_LOCATION".into(), "/ca.pem".into()),
        ("TOPK_KAFKA_PROPERTY_".into(), "ignored".into()),
        ("HOME".into(), "/root".into()),
    ];
    assert_eq!(
        kafka_properties(file_props, env),
        [("sasl.password".to_string(), "new".to_string()), ("ssl.ca.location".into(), "/ca.pem".into())]
    );
    std::fs::write(&file, "[kafka_properties]\n\"socket.timeout.ms\" = 5000\n").unwrap();
    let err = format!("{:#}", Settings::default().over_file(Some(&file)).unwrap_err());
    assert!(err.contains("invalid type: found signed int `5000`, expected a string"), "{err}");
    assert!(err.contains("socket.timeout.ms"), "names the key: {err}");
}

#[test]
fn the_sample_production_config_is_valid() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prod.toml");
    let cfg = Settings::default().over_file(Some(&file)).unwrap();
    assert!(cfg.aggregate_group);
    assert_eq!(cfg.kafka.unwrap().replication, 3);
    assert!(cfg.store.starts_with("postgres://") && cfg.archive.starts_with("s3://"));
}

#[test]
fn aggregate_partitions_and_store_locations() {
    let s = Settings { partitions: Some(8), aggregate_partitions: Some("6-7, 0,1-2".into()), ..Settings::default() };
    assert_eq!(s.over_file(None).unwrap().aggregate_partitions, [0, 1, 2, 6, 7]);
    let cfg = Settings::default().over_file(None).unwrap();
    assert_eq!(cfg.aggregate_partitions.len(), 8);
    assert_eq!(cfg.store, "./topk-data/store.db");
    assert!(cfg.kafka.is_none());
}

/// The defaults documented in the README's configuration table are the ones the code
/// uses (FileSettings::default, gathered from the components).
#[test]
fn the_readme_documents_the_defaults_the_code_uses() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    let table: BTreeMap<String, String> = readme
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let key = cells.get(1)?.strip_prefix('`')?.split('`').next()?;
            Some((key.to_string(), cells.get(2)?.trim_matches('`').to_string()))
        })
        .collect();
    let mut checked = 0;
    for (flag, default) in help_defaults() {
        let key = flag.replace('-', "_");
        let documented = table.get(&key).unwrap_or_else(|| panic!("{key} is not in the README's table"));
        assert_eq!(documented, &default, "README's default of {key}");
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} defaults checked");
}
