use super::*;
use std::collections::{HashMap, HashSet};

fn gen(cfg: &GenConfig) -> (String, GenStats) {
    let mut out = Vec::new();
    let stats = generate(cfg, &mut out).unwrap();
    (String::from_utf8(out).unwrap(), stats)
}

fn small() -> GenConfig {
    GenConfig { events: 50_000, products: 1_000, ..GenConfig::default() }
}

fn parse_ts(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
}

#[test]
fn same_config_same_bytes() {
    let cfg = GenConfig { late_rate: 0.01, ..small() };
    assert_eq!(gen(&cfg), gen(&cfg));
    let csv = GenConfig { format: GenFormat::Csv, ..cfg.clone() };
    assert_eq!(gen(&csv), gen(&csv));
    let other = GenConfig { seed: 2, ..cfg.clone() };
    assert_ne!(gen(&cfg).0, gen(&other).0);
}

#[test]
fn default_start_and_timestamp_format() {
    assert_eq!(GenConfig::default().start_ms, 1_793_491_200_000);
    let mut f = LineFormatter::new(String::new());
    let mut rng = Rng::new(7);
    for _ in 0..20_000 {
        let ms = rng.below(MAX_TS_MS as u64 + 1) as i64;
        let mut buf = Vec::new();
        f.push_ts(ms, &mut buf);
        let want =
            chrono::DateTime::from_timestamp_millis(ms).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        assert_eq!(std::str::from_utf8(&buf).unwrap(), want);
        assert_eq!(parse_ts(&want), ms);
    }
}

#[test]
fn lines_are_json_with_expected_keys() {
    let (text, stats) = gen(&small());
    assert_eq!(stats.lines, 50_000);
    assert_eq!(text.lines().count(), 50_000);
    assert_eq!(stats.lines, stats.sales + stats.refunds + stats.duplicates);
    assert!(stats.refunds > 0 && stats.duplicates > 0);
    let sale_keys =
        ["event_id", "ts", "product_id", "quantity", "price_cents", "country", "city", "category", "product_name"];
    let refund_keys = [
        "event_id",
        "kind",
        "ts",
        "sale_ts",
        "product_id",
        "quantity",
        "price_cents",
        "country",
        "city",
        "category",
        "product_name",
    ];
    let mut prices = HashMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let obj = v.as_object().unwrap();
        let keys: &[&str] = if obj.contains_key("kind") { &refund_keys } else { &sale_keys };
        assert_eq!(obj.len(), keys.len(), "{line}");
        // Key order as documented (serde_json's map sorts, so check the text).
        let mut pos = 0;
        for k in keys {
            let at = line[pos..].find(&format!("\"{k}\":")).unwrap() + pos;
            pos = at + 1;
        }
        let city = obj["city"].as_str().unwrap();
        assert_eq!(line.matches(' ').count(), 1 + city.matches(' ').count(), "only in the product and city names");
        let country = COUNTRIES.iter().position(|c| *c == obj["country"].as_str().unwrap()).unwrap();
        assert!(CITIES[country].contains(&city), "{city} is in {}", COUNTRIES[country]);
        assert!(CATEGORIES.contains(&obj["category"].as_str().unwrap()));
        let pid = obj["product_id"].as_str().unwrap();
        assert!(pid.len() == 8 && pid.starts_with('p'));
        let rank: u64 = pid[1..].parse().unwrap();
        assert!((1..=1000).contains(&rank));
        assert_eq!(obj["product_name"], format!("Product {rank}"));
        let price = obj["price_cents"].as_u64().unwrap();
        assert!((199..=99_999).contains(&price));
        assert_eq!(*prices.entry(rank).or_insert(price), price);
        let q = obj["quantity"].as_i64().unwrap();
        assert!(q != 0 && (-5..=5).contains(&q));
        assert!(COUNTRIES.contains(&obj["country"].as_str().unwrap()));
        parse_ts(obj["ts"].as_str().unwrap());
    }
}

#[test]
fn zipf_rank_one_dominates() {
    let cfg =
        GenConfig { events: 200_000, products: 1_000, refund_rate: 0.0, duplicate_rate: 0.0, ..GenConfig::default() };
    let (text, stats) = gen(&cfg);
    assert_eq!(stats.sales, 200_000);
    let mut counts = vec![0u64; 1001];
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let rank: usize = v["product_id"].as_str().unwrap()[1..].parse().unwrap();
        counts[rank] += 1;
    }
    let max = *counts.iter().max().unwrap();
    assert_eq!(counts[1], max);
    // Average count per rank over doubling buckets strictly decreases.
    let mut prev = f64::INFINITY;
    let mut lo = 1;
    while lo <= 1000 {
        let hi = (lo * 2).min(1001);
        let avg = counts[lo..hi].iter().sum::<u64>() as f64 / (hi - lo) as f64;
        assert!(avg < prev, "bucket {lo}..{hi}: {avg} >= {prev}");
        prev = avg;
        lo = hi;
    }
    // P(rank 1) matches the distribution within a few percent.
    let h: f64 = (1..=1000).map(|k| (k as f64).powf(-1.1)).sum();
    let p1 = counts[1] as f64 / 200_000.0;
    assert!((p1 * h - 1.0).abs() < 0.05, "p1 = {p1}, expected {}", 1.0 / h);
}

#[test]
fn refunds_and_duplicates_refer_to_earlier_lines() {
    let cfg = GenConfig { refund_rate: 0.05, duplicate_rate: 0.05, ..small() };
    let (text, stats) = gen(&cfg);
    let mut by_id: HashMap<String, &str> = HashMap::new();
    // (product_id, ts) of sales seen so far -> largest quantity.
    let mut sales: HashMap<(String, i64), i64> = HashMap::new();
    let (mut refunds, mut dups) = (0, 0);
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = v["event_id"].as_str().unwrap().to_string();
        if let Some(first) = by_id.get(&id) {
            assert_eq!(*first, line, "duplicate must be byte-identical");
            dups += 1;
            continue;
        }
        by_id.insert(id, line);
        let pid = v["product_id"].as_str().unwrap().to_string();
        let ts = parse_ts(v["ts"].as_str().unwrap());
        let q = v["quantity"].as_i64().unwrap();
        if v.get("kind").is_some() {
            refunds += 1;
            assert_eq!(v["kind"], "refund");
            let sale_ts = parse_ts(v["sale_ts"].as_str().unwrap());
            assert!(sale_ts <= ts);
            assert!(q < 0);
            let sold = sales.get(&(pid, sale_ts)).expect("refund of an earlier sale of the same product");
            assert!(-q <= *sold);
        } else {
            assert!(q > 0);
            let e = sales.entry((pid, ts)).or_insert(0);
            *e = (*e).max(q);
        }
    }
    assert_eq!(refunds, stats.refunds);
    assert_eq!(dups, stats.duplicates);
    assert!(refunds > 1_000 && dups > 1_000, "{stats:?}");
}

#[test]
fn timestamps_in_range_and_nearly_ordered() {
    let cfg = GenConfig { refund_rate: 0.05, duplicate_rate: 0.05, ..small() };
    let end = cfg.start_ms + DAY_MS;
    let check = |cfg: &GenConfig| {
        let (text, _) = gen(cfg);
        let mut max = cfg.start_ms;
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let ts = parse_ts(v["ts"].as_str().unwrap());
            assert!(ts >= cfg.start_ms && ts < end, "{line}");
            assert!(ts > max - 60_000, "{line} is >= 60 s behind {max}");
            max = max.max(ts);
        }
        assert!(max > end - 120_000, "spread over the whole range");
    };
    check(&cfg);
    // Sparse stream: 100 lines back is far more than 60 s.
    check(&GenConfig { events: 2_000, ..cfg.clone() });
    // Dense stream.
    check(&GenConfig { events: 300_000, products: 100, ..cfg.clone() });
}

#[test]
fn late_events_are_hours_behind() {
    let cfg = GenConfig { late_rate: 0.02, ..small() };
    let (text, _) = gen(&cfg);
    let mut max = cfg.start_ms;
    let mut late = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let ts = parse_ts(v["ts"].as_str().unwrap());
        assert!(ts >= cfg.start_ms && ts < cfg.start_ms + DAY_MS);
        if ts <= max - 3_600_000 + 70_000 {
            late += 1;
            assert!(ts >= max - 3 * 3_600_000 - 60_000);
        }
        max = max.max(ts);
    }
    assert!((500..1500).contains(&late), "late = {late}");
}

#[test]
fn csv_has_header_and_same_events() {
    let cfg = GenConfig { refund_rate: 0.05, ..small() };
    let (json, _) = gen(&cfg);
    let (csv, stats) = gen(&GenConfig { format: GenFormat::Csv, ..cfg.clone() });
    let mut rows = csv.lines();
    assert_eq!(
        rows.next().unwrap(),
        "event_id,ts,product_id,quantity,price_cents,kind,sale_ts,country,city,category,product_name"
    );
    let rows: Vec<&str> = rows.collect();
    assert_eq!(rows.len() as u64, stats.lines);
    assert_eq!(rows.len(), json.lines().count());
    for (row, line) in rows.iter().zip(json.lines()) {
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(cells.len(), 11, "{row}");
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(cells[0], v["event_id"]);
        assert_eq!(cells[1], v["ts"]);
        assert_eq!(cells[2], v["product_id"]);
        assert_eq!(cells[3], v["quantity"].to_string());
        assert_eq!(cells[4], v["price_cents"].to_string());
        assert_eq!(cells[5], v.get("kind").and_then(|k| k.as_str()).unwrap_or(""));
        assert_eq!(cells[6], v.get("sale_ts").and_then(|k| k.as_str()).unwrap_or(""));
        assert_eq!(cells[7], v["country"]);
        assert_eq!((cells[8], cells[9]), (v["city"].as_str().unwrap(), v["category"].as_str().unwrap()));
        assert_eq!(cells[10], v["product_name"]);
    }
}

#[test]
fn example_line_shape() {
    let cfg = GenConfig { events: 50, ..GenConfig::default() };
    let (text, _) = gen(&cfg);
    let first = text.lines().next().unwrap();
    assert!(first.starts_with("{\"event_id\":\"e1-0000000000\",\"ts\":\"2026-11-01T00:00:00."));
    assert!(first.ends_with("\"}"));
}

#[test]
fn invalid_configs_are_rejected() {
    let bad = [
        GenConfig { products: 0, ..small() },
        GenConfig { zipf: f64::NAN, ..small() },
        GenConfig { days: 0.0, ..small() },
        GenConfig { refund_rate: 1.5, ..small() },
        GenConfig { refund_rate: 0.6, duplicate_rate: 0.6, ..small() },
        GenConfig { start_ms: -1, ..small() },
        GenConfig { seasonality: 1.5, ..small() },
        GenConfig { seasonality: -0.1, ..small() },
    ];
    for cfg in &bad {
        let err = generate(cfg, &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{cfg:?}");
    }
    let empty = GenConfig { events: 0, ..small() };
    assert_eq!(gen(&empty), (String::new(), GenStats::default()));
}

#[test]
fn live_traffic_lines_and_spikes() {
    let mut live = LiveTraffic::new(10_000, 1.1, 3);
    let mut again = LiveTraffic::new(10_000, 1.1, 3);
    let now = 1_796_256_001_123;
    let mut buf = Vec::new();
    let mut buf2 = Vec::new();
    let mut ids = HashSet::new();
    for _ in 0..1_000 {
        buf.clear();
        live.next_line(now, &mut buf);
        again.next_line(now, &mut buf2);
        assert_eq!(buf.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["ts"], "2026-12-03T00:00:01.123Z");
        assert!(v["quantity"].as_i64().unwrap() > 0);
        assert!(ids.insert(v["event_id"].as_str().unwrap().to_string()));
    }
    assert!(buf2.ends_with(&buf), "deterministic per seed");

    // Force a spike and check its product gets about a third of the traffic.
    live.spike_left = SPIKE_EVENTS;
    live.spike_rank = 9_999;
    let mut hits = 0;
    for _ in 0..SPIKE_EVENTS {
        buf.clear();
        live.next_line(now, &mut buf);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        hits += u32::from(v["product_id"] == "p0009999");
    }
    assert!((550..800).contains(&hits), "hits = {hits}");
    assert_eq!(live.spike_left, 0);

    // Spikes start on their own about once per 20k events.
    let mut started = 0;
    for _ in 0..400_000 {
        let was = live.spike_left;
        buf.clear();
        live.next_line(now, &mut buf);
        started += u32::from(live.spike_left > was);
    }
    assert!((5..=40).contains(&started), "started = {started}");
}

#[test]
fn seasonality_gives_a_daily_and_weekly_rhythm_in_time_order() {
    // 14 days from Sunday 2026-11-01, no late events: sales by hour of day and by weekday.
    let cfg =
        GenConfig { events: 400_000, days: 14.0, seasonality: 0.8, duplicate_rate: 0.0, refund_rate: 0.0, ..small() };
    let (text, _) = gen(&cfg);
    let (start, end) = (cfg.start_ms, cfg.start_ms + 14 * DAY_MS);
    let (mut by_hour, mut by_weekday) = ([0u64; 24], [0u64; 7]);
    let mut newest = start;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let ts = parse_ts(v["ts"].as_str().unwrap());
        assert!((start..end).contains(&ts), "{line}");
        // Jitter aside (under a minute), events come in time order.
        assert!(ts > newest - MAX_JITTER_MS as i64, "{line}");
        newest = newest.max(ts);
        by_hour[(ts / topk_core::HOUR_MS).rem_euclid(24) as usize] += 1;
        by_weekday[((ts / DAY_MS) + 3).rem_euclid(7) as usize] += 1;
    }
    // Busiest at 20:00, quietest at 08:00: (1 + 0.8) / (1 - 0.8) = 9 times, give or take.
    let (peak, trough) = (by_hour[20] as f64, by_hour[8] as f64);
    assert!(peak / trough > 6.0 && peak / trough < 12.0, "{by_hour:?}");
    assert_eq!(by_hour.iter().enumerate().max_by_key(|(_, n)| **n).unwrap().0, 20, "{by_hour:?}");
    // Saturday and Sunday above Tuesday and Wednesday (weekday 0 is Monday).
    assert!(by_weekday[5].min(by_weekday[6]) as f64 > 1.4 * by_weekday[1].max(by_weekday[2]) as f64, "{by_weekday:?}");
    // Even spread without it: every hour of the day within 5 % of the mean.
    let (flat, _) = gen(&GenConfig { seasonality: 0.0, ..cfg.clone() });
    let mut flat_by_hour = [0u64; 24];
    for line in flat.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        flat_by_hour[(parse_ts(v["ts"].as_str().unwrap()) / topk_core::HOUR_MS).rem_euclid(24) as usize] += 1;
    }
    let mean = cfg.events as f64 / 24.0;
    assert!(flat_by_hour.iter().all(|&n| (n as f64 - mean).abs() < 0.05 * mean), "{flat_by_hour:?}");
}

#[test]
fn each_country_has_its_own_favourites_and_cities_are_skewed() {
    let cfg = GenConfig { events: 100_000, products: 1_000, refund_rate: 0.0, duplicate_rate: 0.0, ..small() };
    let (text, _) = gen(&cfg);
    let mut global: HashMap<String, u64> = HashMap::new();
    let mut by_country: HashMap<String, HashMap<String, u64>> = HashMap::new();
    let mut cities: HashMap<String, u64> = HashMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let (p, c) = (v["product_id"].as_str().unwrap().to_string(), v["country"].as_str().unwrap().to_string());
        *global.entry(p.clone()).or_default() += 1;
        *by_country.entry(c).or_default().entry(p).or_default() += 1;
        *cities.entry(v["city"].as_str().unwrap().to_string()).or_default() += 1;
    }
    let top = |counts: &HashMap<String, u64>| {
        let mut v: Vec<(&String, &u64)> = counts.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        v.into_iter().take(5).map(|(p, _)| p.clone()).collect::<Vec<_>>()
    };
    let global_top = top(&global);
    assert_eq!(global_top[0], "p0000001", "global popularity is still the configured Zipf");
    let differ = by_country.values().filter(|c| top(c) != global_top).count();
    assert!(differ >= 8, "{differ} of 10 countries have a top 5 of their own");
    assert!(cities["Berlin"] > cities["Munich"], "a country's first city sells most");
}
