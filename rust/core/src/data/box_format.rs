//! Box-aware text: boxes rendered into target text and parsed back (CURE, MAIRA-2, PaliGemma,
//! MedCLM conventions; docs/loader.md "Box-aware text supervision"). Boxes here are normalised
//! `[x1, y1, x2, y2]` in [0, 1] of the *augmented* output image.
//!
//! | format   | one box                                        | quantisation            |
//! |----------|------------------------------------------------|-------------------------|
//! | `cure`   | `[cx,cy,w,h]`                                  | 2 decimals, no spaces   |
//! | `maira2` | `<box><xNN><yNN><xNN><yNN></box>` (x1 y1 x2 y2) | 100 bins                |
//! | `loc`    | `<locYYYY><locXXXX><locYYYY><locXXXX>` (y first) | 1024 bins             |
//! | `xyxy`   | `[x1, y1, x2, y2]`                             | 4 decimals              |
//!
//! A value v in [0, 1] goes to bin `min(floor(v * bins), bins - 1)`; parsing returns the bin's
//! centre `(bin + 0.5) / bins`, so a round trip moves a coordinate by at most half a bin.
//! Several boxes are separated by a space. In `maira2` a grounded phrase is wrapped as
//! `<obj>phrase<box>..</box></obj>`; in the other formats the boxes follow the phrase.

use std::sync::OnceLock;

use regex::Regex;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum BoxFormat {
    Cure,
    Maira2,
    Loc,
    Xyxy,
}

named_enum!(BoxFormat, "box_format", [
    "cure" => Cure,
    "maira2" => Maira2,
    "loc" => Loc,
    "xyxy" => Xyxy,
]);

fn bin(v: f64, bins: u32) -> u32 {
    ((v.clamp(0.0, 1.0) * bins as f64).floor() as u32).min(bins - 1)
}

fn unbin(b: u32, bins: u32) -> f64 {
    (b as f64 + 0.5) / bins as f64
}

/// Render one normalised box.
pub fn render_box(format: BoxFormat, b: &[f64; 4]) -> String {
    let [x1, y1, x2, y2] = b.map(|v| v.clamp(0.0, 1.0));
    match format {
        BoxFormat::Cure => format!(
            "[{:.2},{:.2},{:.2},{:.2}]",
            (x1 + x2) / 2.0,
            (y1 + y2) / 2.0,
            x2 - x1,
            y2 - y1
        ),
        BoxFormat::Maira2 => format!(
            "<box><x{:02}><y{:02}><x{:02}><y{:02}></box>",
            bin(x1, 100),
            bin(y1, 100),
            bin(x2, 100),
            bin(y2, 100)
        ),
        BoxFormat::Loc => format!(
            "<loc{:04}><loc{:04}><loc{:04}><loc{:04}>",
            bin(y1, 1024),
            bin(x1, 1024),
            bin(y2, 1024),
            bin(x2, 1024)
        ),
        BoxFormat::Xyxy => format!("[{x1:.4}, {y1:.4}, {x2:.4}, {y2:.4}]"),
    }
}

/// Render a list of boxes, separated by a space.
pub fn render_boxes(format: BoxFormat, boxes: &[[f64; 4]]) -> String {
    boxes
        .iter()
        .map(|b| render_box(format, b))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A phrase with its boxes, as one grounded unit of a target text.
pub fn render_grounded(format: BoxFormat, phrase: &str, boxes: &[[f64; 4]]) -> String {
    match (format, boxes.is_empty()) {
        (BoxFormat::Maira2, _) => format!(
            "<obj>{phrase}{}</obj>",
            render_boxes(format, boxes).replace(' ', "")
        ),
        (_, true) => phrase.to_string(),
        (_, false) => format!("{phrase} {}", render_boxes(format, boxes)),
    }
}

fn regex(format: BoxFormat) -> &'static Regex {
    static CELLS: [OnceLock<Regex>; 4] = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    let (i, pattern) = match format {
        BoxFormat::Cure => (
            0,
            r"\[\s*([0-9.]+)\s*,\s*([0-9.]+)\s*,\s*([0-9.]+)\s*,\s*([0-9.]+)\s*\]",
        ),
        BoxFormat::Maira2 => (1, r"<box><x(\d+)><y(\d+)><x(\d+)><y(\d+)></box>"),
        BoxFormat::Loc => (2, r"<loc(\d{4})><loc(\d{4})><loc(\d{4})><loc(\d{4})>"),
        BoxFormat::Xyxy => (
            3,
            r"\[\s*([0-9.]+)\s*,\s*([0-9.]+)\s*,\s*([0-9.]+)\s*,\s*([0-9.]+)\s*\]",
        ),
    };
    CELLS[i].get_or_init(|| Regex::new(pattern).expect("static pattern"))
}

/// Every box found in `text`, as normalised `[x1, y1, x2, y2]`, in order of appearance.
/// Malformed fragments are ignored: generated text is parsed leniently for evaluation.
pub fn parse_boxes(format: BoxFormat, text: &str) -> Vec<[f64; 4]> {
    regex(format)
        .captures_iter(text)
        .filter_map(|c| {
            let n: Vec<f64> = (1..=4).filter_map(|i| c[i].parse::<f64>().ok()).collect();
            if n.len() != 4 {
                return None;
            }
            Some(match format {
                BoxFormat::Cure => [
                    n[0] - n[2] / 2.0,
                    n[1] - n[3] / 2.0,
                    n[0] + n[2] / 2.0,
                    n[1] + n[3] / 2.0,
                ],
                BoxFormat::Xyxy => [n[0], n[1], n[2], n[3]],
                BoxFormat::Maira2 => {
                    let u = |v: f64| unbin((v as u32).min(99), 100);
                    [u(n[0]), u(n[1]), u(n[2]), u(n[3])]
                }
                BoxFormat::Loc => {
                    let u = |v: f64| unbin((v as u32).min(1023), 1024);
                    [u(n[1]), u(n[0]), u(n[3]), u(n[2])]
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: [f64; 4] = [0.1, 0.2, 0.5, 0.9];

    #[test]
    fn renders_each_format() {
        assert_eq!(render_box(BoxFormat::Cure, &B), "[0.30,0.55,0.40,0.70]");
        assert_eq!(
            render_box(BoxFormat::Maira2, &B),
            "<box><x10><y20><x50><y90></box>"
        );
        assert_eq!(
            render_box(BoxFormat::Loc, &B),
            "<loc0204><loc0102><loc0921><loc0512>"
        );
        assert_eq!(
            render_box(BoxFormat::Xyxy, &B),
            "[0.1000, 0.2000, 0.5000, 0.9000]"
        );
        assert_eq!(
            render_box(BoxFormat::Maira2, &[0.0, 0.0, 1.0, 1.0]),
            "<box><x00><y00><x99><y99></box>"
        );
        assert_eq!(
            render_grounded(BoxFormat::Maira2, "effusion", &[B, B]),
            "<obj>effusion<box><x10><y20><x50><y90></box><box><x10><y20><x50><y90></box></obj>"
        );
        assert_eq!(
            render_grounded(BoxFormat::Cure, "effusion", &[B]),
            "effusion [0.30,0.55,0.40,0.70]"
        );
    }

    #[test]
    fn parse_round_trips_within_quantisation() {
        for (format, tol) in [
            (BoxFormat::Cure, 0.0101),
            (BoxFormat::Maira2, 0.0051),
            (BoxFormat::Loc, 0.00051),
            (BoxFormat::Xyxy, 0.00006),
        ] {
            let boxes = [B, [0.0, 0.33, 0.77, 1.0]];
            let text = format!("Left effusion: {} and more", render_boxes(format, &boxes));
            let parsed = parse_boxes(format, &text);
            assert_eq!(parsed.len(), 2, "{format:?}: {text}");
            for (p, b) in parsed.iter().zip(&boxes) {
                for k in 0..4 {
                    assert!((p[k] - b[k]).abs() <= tol, "{format:?} {p:?} vs {b:?}");
                }
            }
        }
    }

    #[test]
    fn unknown_format_is_an_error() {
        assert!("yolo".parse::<BoxFormat>().is_err());
    }
}
