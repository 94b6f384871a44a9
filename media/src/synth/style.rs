//! Broadcast styles: how a league and a broadcaster show live play, replays
//! and other graphics, and the built-in catalog.

use serde::{Deserialize, Serialize};

/// An RGB colour.
pub type Rgb = [u8; 3];

/// The sports the generator can draw.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Sport {
    /// Green striped pitch, 11-a-side.
    Soccer,
    /// Wooden court.
    Basketball,
    /// White ice rink.
    IceHockey,
}

impl Sport {
    /// All sports, in catalog order.
    pub const ALL: [Sport; 3] = [Sport::Soccer, Sport::Basketball, Sport::IceHockey];

    /// The kebab-case name used in style names and ground truth (`ice-hockey`).
    pub fn as_str(self) -> &'static str {
        match self {
            Sport::Soccer => "soccer",
            Sport::Basketball => "basketball",
            Sport::IceHockey => "ice-hockey",
        }
    }
}

impl std::fmt::Display for Sport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Sport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Sport::ALL
            .into_iter()
            .find(|sp| sp.as_str() == s)
            .ok_or_else(|| {
                format!("unknown sport `{s}`; expected one of `soccer`, `basketball`, `ice-hockey`")
            })
    }
}

/// The shape of the replay transition graphic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WipeShape {
    /// A vertical band with the logo sweeps left to right.
    Horizontal,
    /// A slanted band sweeps from the top-left corner.
    Diagonal,
    /// A disc grows from the centre to cover the picture, then shrinks.
    Iris,
    /// The logo zooms in until it fills the picture, then out.
    LogoZoom,
}

/// The league logo drawn in transitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogoShape {
    /// Five-pointed star.
    Star,
    /// Square on its corner.
    Diamond,
    /// Regular hexagon.
    Hexagon,
    /// Disc with a horizontal bar.
    Roundel,
}

/// Replay transition graphics of a league (as produced by a broadcaster).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphicStyle {
    /// Shape of the wipe.
    pub wipe: WipeShape,
    /// Logo drawn on the wipe.
    pub logo: LogoShape,
    /// Main colour of the wipe.
    pub primary: Rgb,
    /// Second colour (stripes, logo).
    pub secondary: Rgb,
    /// Frames of the opening transition (12..=35).
    pub opening_frames: u32,
    /// Frames of the closing transition (12..=35).
    pub closing_frames: u32,
}

/// Colours of the playing field and teams.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldStyle {
    /// Field base colour.
    pub base: Rgb,
    /// Alternate stripe / plank colour.
    pub stripe: Rgb,
    /// Line markings.
    pub lines: Rgb,
    /// Home team shirts.
    pub home: Rgb,
    /// Away team shirts.
    pub away: Rgb,
}

/// The broadcaster's persistent score box.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreboardStyle {
    /// Box background.
    pub background: Rgb,
    /// Digits.
    pub text: Rgb,
    /// Highlight used by score pop-ups.
    pub accent: Rgb,
}

/// How replays are shown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayStyle {
    /// Probability that an event gets a replay.
    pub frequency: f64,
    /// Slowest playback speed (e.g. 0.25).
    pub slow_min: f64,
    /// Fastest playback speed (e.g. 0.5).
    pub slow_max: f64,
    /// Render in-between moments (smooth slow motion) instead of repeating frames.
    pub interpolate: bool,
    /// Zoom of the replay camera relative to the live camera, lower bound.
    pub zoom_min: f64,
    /// Zoom upper bound.
    pub zoom_max: f64,
    /// Probability that a replay comes from the reverse angle (mirrored).
    pub reverse_angle: f64,
    /// Probability that a pundit draws on the replay (circle, arrow).
    pub pundit_drawings: f64,
}

/// Non-replay graphics and cuts that a detector must not mistake for replays.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistractorStyle {
    /// Probability of a sliding ad banner in a stretch of live play.
    pub ad_banner: f64,
    /// Probability of a lower-third name bar in a stretch of live play.
    pub lower_third: f64,
    /// Probability of a score / statistics pop-up after an event without a replay.
    pub score_popup: f64,
    /// Probability of a hard cut to a second live camera in a stretch of live play.
    pub live_cut: f64,
    /// Colour of banners and bars.
    pub color: Rgb,
}

/// Everything that decides what one league + broadcaster + season looks like.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Style {
    /// Unique name: `sport/league/broadcaster/season`.
    pub name: String,
    /// The sport.
    pub sport: Sport,
    /// League name.
    pub league: String,
    /// Broadcaster name.
    pub broadcaster: String,
    /// Season, e.g. `2024`.
    pub season: String,
    /// A note on what is special (drift styles), empty otherwise.
    pub note: String,
    /// Field and team colours.
    pub field: FieldStyle,
    /// Replay transitions; `None` for a league without replay graphics (only
    /// slow motion and the angle change mark a replay).
    pub graphics: Option<GraphicStyle>,
    /// Score box.
    pub scoreboard: ScoreboardStyle,
    /// Replay behaviour.
    pub replay: ReplayStyle,
    /// Distractors.
    pub distractors: DistractorStyle,
}

struct League {
    name: &'static str,
    wipe: WipeShape,
    logo: LogoShape,
    primary: Rgb,
    secondary: Rgb,
    opening: u32,
    closing: u32,
    frequency: f64,
}

struct Broadcaster {
    name: &'static str,
    scoreboard: ScoreboardStyle,
    /// Added to the league's transition lengths (broadcasters trim or pad the sting).
    length_delta: i32,
    banner: Rgb,
    distractor_rate: f64,
}

fn field(sport: Sport) -> FieldStyle {
    match sport {
        Sport::Soccer => FieldStyle {
            base: [46, 128, 52],
            stripe: [58, 146, 62],
            lines: [235, 240, 235],
            home: [200, 30, 40],
            away: [240, 240, 250],
        },
        Sport::Basketball => FieldStyle {
            base: [196, 142, 84],
            stripe: [182, 128, 72],
            lines: [250, 250, 245],
            home: [30, 60, 170],
            away: [245, 200, 30],
        },
        Sport::IceHockey => FieldStyle {
            base: [226, 234, 240],
            stripe: [214, 224, 234],
            lines: [200, 30, 40],
            home: [20, 20, 30],
            away: [230, 110, 20],
        },
    }
}

fn leagues(sport: Sport) -> [League; 3] {
    use LogoShape::*;
    use WipeShape::*;
    let l = |name, wipe, logo, primary, secondary, opening, closing, frequency| League {
        name,
        wipe,
        logo,
        primary,
        secondary,
        opening,
        closing,
        frequency,
    };
    match sport {
        Sport::Soccer => [
            l(
                "premier-north",
                Horizontal,
                Star,
                [90, 20, 140],
                [255, 255, 255],
                18,
                16,
                0.7,
            ),
            l(
                "liga-sur",
                Iris,
                Roundel,
                [230, 60, 20],
                [255, 220, 0],
                24,
                22,
                0.6,
            ),
            l(
                "coppa-est",
                Diagonal,
                Diamond,
                [0, 110, 200],
                [240, 240, 240],
                14,
                14,
                0.65,
            ),
        ],
        Sport::Basketball => [
            l(
                "hoops-pro",
                LogoZoom,
                Hexagon,
                [200, 20, 60],
                [20, 30, 90],
                20,
                18,
                0.6,
            ),
            l(
                "court-league",
                Horizontal,
                Roundel,
                [250, 120, 0],
                [10, 10, 10],
                16,
                16,
                0.55,
            ),
            l(
                "baltic-bl",
                Diagonal,
                Star,
                [0, 150, 110],
                [250, 250, 250],
                28,
                24,
                0.5,
            ),
        ],
        Sport::IceHockey => [
            l(
                "ice-premier",
                Iris,
                Diamond,
                [0, 60, 160],
                [200, 220, 255],
                22,
                20,
                0.6,
            ),
            l(
                "nordic-hl",
                LogoZoom,
                Star,
                [160, 0, 30],
                [255, 210, 60],
                30,
                26,
                0.55,
            ),
            l(
                "puck-cup",
                Horizontal,
                Hexagon,
                [40, 40, 40],
                [0, 200, 230],
                13,
                12,
                0.7,
            ),
        ],
    }
}

fn broadcasters(sport: Sport) -> [Broadcaster; 2] {
    let b = |name, background, text, accent, length_delta, banner, distractor_rate| Broadcaster {
        name,
        scoreboard: ScoreboardStyle {
            background,
            text,
            accent,
        },
        length_delta,
        banner,
        distractor_rate,
    };
    match sport {
        Sport::Soccer => [
            b(
                "skyline-tv",
                [16, 24, 64],
                [255, 255, 255],
                [255, 200, 0],
                0,
                [0, 90, 200],
                0.5,
            ),
            b(
                "canal-uno",
                [180, 0, 40],
                [255, 255, 255],
                [0, 220, 120],
                4,
                [220, 40, 40],
                0.35,
            ),
        ],
        Sport::Basketball => [
            b(
                "net-one",
                [10, 10, 10],
                [255, 170, 0],
                [0, 200, 255],
                0,
                [120, 0, 160],
                0.5,
            ),
            b(
                "dunk-tv",
                [0, 80, 60],
                [255, 255, 255],
                [255, 80, 80],
                3,
                [0, 140, 90],
                0.4,
            ),
        ],
        Sport::IceHockey => [
            b(
                "frost-tv",
                [0, 40, 90],
                [220, 240, 255],
                [255, 255, 0],
                0,
                [0, 70, 140],
                0.45,
            ),
            b(
                "rink-cast",
                [70, 70, 80],
                [255, 255, 255],
                [255, 100, 0],
                5,
                [200, 90, 0],
                0.4,
            ),
        ],
    }
}

fn build(sport: Sport, league: &League, bc: &Broadcaster, season: &str, note: &str) -> Style {
    let len = |n: u32| (n as i32 + bc.length_delta).clamp(12, 35) as u32;
    Style {
        name: format!("{}/{}/{}/{}", sport, league.name, bc.name, season),
        sport,
        league: league.name.to_string(),
        broadcaster: bc.name.to_string(),
        season: season.to_string(),
        note: note.to_string(),
        field: field(sport),
        graphics: Some(GraphicStyle {
            wipe: league.wipe,
            logo: league.logo,
            primary: league.primary,
            secondary: league.secondary,
            opening_frames: len(league.opening),
            closing_frames: len(league.closing),
        }),
        scoreboard: bc.scoreboard.clone(),
        replay: ReplayStyle {
            frequency: league.frequency,
            slow_min: 0.25,
            slow_max: 0.5,
            interpolate: bc.length_delta == 0,
            zoom_min: 1.6,
            zoom_max: 2.4,
            reverse_angle: 0.5,
            pundit_drawings: 0.1,
        },
        distractors: DistractorStyle {
            ad_banner: bc.distractor_rate,
            lower_third: bc.distractor_rate * 0.8,
            score_popup: 0.6,
            live_cut: bc.distractor_rate,
            color: bc.banner,
        },
    }
}

/// The built-in style catalog: 3 sports x 3 leagues x 2 broadcasters (season
/// `2024`), plus the drift styles:
///
/// - `soccer/aurora-league` changes its graphics between seasons `2023`
///   (horizontal wipe, blue star) and `2024` (logo zoom, orange hexagon, longer);
/// - `ice-hockey/bare-league` has no replay graphics at all;
/// - `basketball/ink-league` has pundit drawings on almost every replay.
pub fn styles() -> Vec<Style> {
    let mut out = Vec::new();
    for sport in Sport::ALL {
        for league in &leagues(sport) {
            for bc in &broadcasters(sport) {
                out.push(build(sport, league, bc, "2024", ""));
            }
        }
    }
    let drift_2023 = League {
        name: "aurora-league",
        wipe: WipeShape::Horizontal,
        logo: LogoShape::Star,
        primary: [20, 60, 200],
        secondary: [255, 255, 255],
        opening: 16,
        closing: 14,
        frequency: 0.65,
    };
    let drift_2024 = League {
        wipe: WipeShape::LogoZoom,
        logo: LogoShape::Hexagon,
        primary: [255, 130, 0],
        secondary: [30, 30, 30],
        opening: 30,
        closing: 28,
        ..drift_2023
    };
    for bc in &broadcasters(Sport::Soccer) {
        out.push(build(
            Sport::Soccer,
            &drift_2023,
            bc,
            "2023",
            "season drift: graphics change in 2024",
        ));
        out.push(build(
            Sport::Soccer,
            &drift_2024,
            bc,
            "2024",
            "season drift: new logo-zoom graphics",
        ));
    }
    let bare = League {
        name: "bare-league",
        ..leagues(Sport::IceHockey)[0]
    };
    for bc in &broadcasters(Sport::IceHockey) {
        let mut s = build(
            Sport::IceHockey,
            &bare,
            bc,
            "2024",
            "no replay graphics: only slow motion and angle mark replays",
        );
        s.graphics = None;
        out.push(s);
    }
    let ink = League {
        name: "ink-league",
        ..leagues(Sport::Basketball)[1]
    };
    for bc in &broadcasters(Sport::Basketball) {
        let mut s = build(
            Sport::Basketball,
            &ink,
            bc,
            "2024",
            "pundit drawings on most replays",
        );
        s.replay.pundit_drawings = 0.9;
        out.push(s);
    }
    // Two more basketball drifts, so one sport shows all three kinds the
    // continual-learning demo needs (pundit drawings above): a league whose
    // replay graphics look like nothing seen in training, and one that shows
    // replays with no graphics at all.
    let metro = League {
        name: "metro-league",
        wipe: WipeShape::Iris,
        logo: LogoShape::Star,
        primary: [250, 200, 20],
        secondary: [10, 90, 40],
        opening: 32,
        closing: 30,
        frequency: 0.65,
    };
    let street = League {
        name: "street-league",
        ..leagues(Sport::Basketball)[2]
    };
    for bc in &broadcasters(Sport::Basketball) {
        out.push(build(
            Sport::Basketball,
            &metro,
            bc,
            "2024",
            "new replay graphics: iris wipe, yellow star, long stings",
        ));
        let mut s = build(
            Sport::Basketball,
            &street,
            bc,
            "2024",
            "no replay graphics: only slow motion and angle mark replays",
        );
        s.graphics = None;
        out.push(s);
    }
    out
}

/// Finds a catalog style. `season: None` picks the latest season.
pub fn find_style(
    sport: Sport,
    league: &str,
    broadcaster: &str,
    season: Option<&str>,
) -> Option<Style> {
    styles()
        .into_iter()
        .filter(|s| s.sport == sport && s.league == league && s.broadcaster == broadcaster)
        .filter(|s| season.is_none_or(|want| s.season == want))
        .max_by(|a, b| a.season.cmp(&b.season))
}

/// Finds a catalog style by its full name, e.g. `soccer/premier-north/skyline-tv/2024`.
pub fn style_by_name(name: &str) -> Option<Style> {
    styles().into_iter().find(|s| s.name == name)
}
