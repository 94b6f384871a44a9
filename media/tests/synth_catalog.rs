//! The style catalog and set specs.

use std::collections::{BTreeMap, BTreeSet};

use media::synth::{Preset, Sport, SynthError, SynthSpec, find_style, styles};

#[test]
fn catalog_has_three_sports_three_leagues_two_broadcasters() {
    let all = styles();
    let mut grid: BTreeMap<Sport, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for s in &all {
        grid.entry(s.sport)
            .or_default()
            .entry(s.league.clone())
            .or_default()
            .insert(s.broadcaster.clone());
        assert_eq!(
            s.name,
            format!("{}/{}/{}/{}", s.sport, s.league, s.broadcaster, s.season)
        );
        if let Some(g) = &s.graphics {
            assert!((12..=35).contains(&g.opening_frames), "{}", s.name);
            assert!((12..=35).contains(&g.closing_frames), "{}", s.name);
            assert_ne!(g.primary, g.secondary);
        }
        assert!(
            s.replay.slow_min >= 0.25
                && s.replay.slow_max <= 0.5
                && s.replay.slow_min <= s.replay.slow_max
        );
    }
    assert_eq!(grid.len(), 3);
    for (sport, leagues) in &grid {
        let full = leagues.values().filter(|b| b.len() >= 2).count();
        assert!(
            full >= 3,
            "{sport} has only {full} leagues with two broadcasters"
        );
    }
    let names: BTreeSet<_> = all.iter().map(|s| &s.name).collect();
    for s in &all {
        assert_eq!(media::synth::style_by_name(&s.name).as_ref(), Some(s));
    }
    assert!(media::synth::style_by_name("soccer/nope").is_none());
    assert_eq!(names.len(), all.len(), "style names are unique");
}

#[test]
fn drift_styles_are_in_the_catalog() {
    let old = find_style(Sport::Soccer, "aurora-league", "skyline-tv", Some("2023")).unwrap();
    let new = find_style(Sport::Soccer, "aurora-league", "skyline-tv", Some("2024")).unwrap();
    assert_ne!(
        old.graphics, new.graphics,
        "the league changes its graphics between seasons"
    );
    assert_eq!(
        find_style(Sport::Soccer, "aurora-league", "skyline-tv", None)
            .unwrap()
            .season,
        "2024"
    );

    let bare = find_style(Sport::IceHockey, "bare-league", "frost-tv", None).unwrap();
    assert!(bare.graphics.is_none());
    let ink = find_style(Sport::Basketball, "ink-league", "net-one", None).unwrap();
    assert!(ink.replay.pundit_drawings >= 0.8);
    // Wipe shapes vary across the catalog.
    let wipes: BTreeSet<String> = styles()
        .iter()
        .filter_map(|s| s.graphics.as_ref().map(|g| format!("{:?}", g.wipe)))
        .collect();
    assert_eq!(wipes.len(), 4, "{wipes:?}");
}

#[test]
fn styles_round_trip_through_json() {
    for s in styles() {
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(
            serde_json::from_str::<media::synth::Style>(&text).unwrap(),
            s
        );
    }
    assert_eq!("ice-hockey".parse::<Sport>().unwrap(), Sport::IceHockey);
    assert!(
        "curling"
            .parse::<Sport>()
            .unwrap_err()
            .contains("ice-hockey")
    );
}

#[test]
fn set_spec_cycles_matching_styles() {
    let spec = SynthSpec {
        sport: Sport::Basketball,
        league: None,
        broadcaster: Some("dunk-tv".into()),
        season: None,
        preset: Preset::Small,
        width: None,
        height: None,
        fps: None,
        duration: None,
        seed: 9,
        count: 5,
    };
    let videos = spec.videos().unwrap();
    assert_eq!(videos.len(), 5);
    assert!(
        videos
            .iter()
            .all(|v| v.style.broadcaster == "dunk-tv" && v.width == 112 && v.fps == 10.0)
    );
    let leagues: BTreeSet<_> = videos.iter().map(|v| v.style.league.clone()).collect();
    // Six basketball styles per broadcaster (hoops-pro, court-league,
    // baltic-bl, and the drifts ink-league, metro-league, street-league):
    // five videos take the first five in turn.
    assert_eq!(
        leagues.len(),
        5,
        "hoops-pro, court-league, baltic-bl, ink-league, metro-league"
    );
    let seeds: BTreeSet<_> = videos.iter().map(|v| v.seed).collect();
    assert_eq!(seeds.len(), 5);
    assert_eq!(videos, spec.videos().unwrap(), "deterministic");
}

#[test]
fn unknown_league_lists_what_exists() {
    let spec: SynthSpec = serde_json::from_str(
        r#"{"sport": "soccer", "league": "moon-league", "seed": 1, "count": 1}"#,
    )
    .unwrap();
    let err = spec.videos().unwrap_err();
    assert!(matches!(err, SynthError::UnknownStyle { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("moon-league") && msg.contains("soccer/premier-north/skyline-tv/2024"),
        "{msg}"
    );
}
