//! Horizontal flip that keeps text and boxes consistent with the image (docs/image.md, "Flip and
//! laterality": a flip swaps the laterality words of the text, or is refused for
//! laterality-sensitive samples; the refusal lives in the Python front, `gradatim.image.hflip`).
//!
//! * [`hflip`] is `np.fliplr` / `cv2.flip(img, 1)`: pixel order reversed, channel order kept.
//! * [`hflip_boxes`] mirrors continuous pixel coordinates: `x -> width - x`, so `[x1, x2]` becomes
//!   `[width - x2, width - x1]` (pixel `i`, spanning `[i, i + 1)`, goes to `width - 1 - i`).
//! * [`swap_laterality`] swaps the whole words "left" and "right"; see its documentation for the
//!   word rule.

use super::{BoxXyxy, Image, ImageRef};

/// Mirror the image left-right.
pub fn hflip<T: Copy + Default>(img: ImageRef<T>) -> Image<T> {
    let (w, c) = (img.width, img.channels);
    let stride = w * c;
    let mut data = Vec::with_capacity(img.data.len());
    if stride > 0 {
        for row in img.data.chunks_exact(stride) {
            if c == 1 {
                // `extend` from a reversed slice iterator compiles to a vectorised byte/word reverse.
                data.extend(row.iter().rev());
            } else {
                for px in row.chunks_exact(c).rev() {
                    data.extend_from_slice(px);
                }
            }
        }
    }
    Image {
        width: img.width,
        height: img.height,
        channels: img.channels,
        data,
    }
}

/// Mirror boxes for an image of the given width: `[x1, y1, x2, y2]` -> `[w - x2, y1, w - x1, y2]`.
pub fn hflip_boxes(boxes: &[BoxXyxy], width: usize) -> Vec<BoxXyxy> {
    let w = width as f64;
    boxes
        .iter()
        .map(|&[x1, y1, x2, y2]| [w - x2, y1, w - x1, y2])
        .collect()
}

/// Swap the laterality words "left" and "right" (whole words, case kept).
///
/// * A word is a maximal run of alphanumeric characters (Unicode): "leftward", "bright",
///   "left2" and "leftmost" are other words and stay as they are. Hyphens, apostrophes,
///   underscores, slashes and punctuation separate words, so "left-sided" -> "right-sided",
///   "left/right" -> "right/left", "left_lung" -> "right_lung", "right's" -> "left's".
/// * Case: an all-capital word stays all-capital ("LEFT" -> "RIGHT"), a word starting with a
///   capital is capitalised ("Left" -> "Right"), anything else becomes lower case.
/// * The single letters "L" and "R" are left alone: in reports they are as likely to be marker
///   labels, units or list items as sides, and a wrong swap is worse than a missed one.
pub fn swap_laterality(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut word_start: Option<usize> = None;
    for (i, ch) in text.char_indices() {
        if ch.is_alphanumeric() {
            word_start.get_or_insert(i);
        } else {
            if let Some(s) = word_start.take() {
                push_word(&mut out, &text[s..i]);
            }
            out.push(ch);
        }
    }
    if let Some(s) = word_start {
        push_word(&mut out, &text[s..]);
    }
    out
}

fn push_word(out: &mut String, word: &str) {
    let swapped = if word.eq_ignore_ascii_case("left") {
        "right"
    } else if word.eq_ignore_ascii_case("right") {
        "left"
    } else {
        out.push_str(word);
        return;
    };
    let mut chars = word.chars();
    let first_upper = chars.next().is_some_and(|c| c.is_ascii_uppercase());
    let all_upper = first_upper && chars.all(|c| c.is_ascii_uppercase());
    if all_upper {
        out.push_str(&swapped.to_ascii_uppercase());
    } else if first_upper {
        out.push_str(&swapped[..1].to_ascii_uppercase());
        out.push_str(&swapped[1..]);
    } else {
        out.push_str(swapped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hflip_reverses_pixels_and_keeps_channels() {
        let grey = Image {
            width: 3,
            height: 2,
            channels: 1,
            data: vec![1u8, 2, 3, 4, 5, 6],
        };
        assert_eq!(hflip(grey.view()).data, vec![3, 2, 1, 6, 5, 4]);
        let rgb = Image {
            width: 2,
            height: 1,
            channels: 3,
            data: vec![1u16, 2, 3, 4, 5, 6],
        };
        assert_eq!(hflip(rgb.view()).data, vec![4, 5, 6, 1, 2, 3]);
        let twice = hflip(hflip(rgb.view()).view());
        assert_eq!(twice, rgb);
        let empty = ImageRef::<u8>::new(0, 0, 1, &[]).unwrap();
        assert!(hflip(empty).data.is_empty());
    }

    #[test]
    fn hflip_boxes_mirror_and_swap_x() {
        let b = hflip_boxes(&[[10.0, 1.0, 30.0, 2.0], [0.0, 0.0, 100.0, 5.0]], 100);
        assert_eq!(b, vec![[70.0, 1.0, 90.0, 2.0], [0.0, 0.0, 100.0, 5.0]]);
    }

    #[test]
    fn laterality_words_swap_with_case() {
        let cases = [
            ("left lung", "right lung"),
            ("Right pleural effusion.", "Left pleural effusion."),
            ("LEFT and RIGHT", "RIGHT and LEFT"),
            ("left-sided opacity", "right-sided opacity"),
            ("right/left", "left/right"),
            ("the right's margin", "the left's margin"),
            ("left_lung", "right_lung"),
            ("(left)", "(right)"),
            ("Left.Right,left;RIGHT", "Right.Left,right;LEFT"),
            ("lEFT", "right"),
        ];
        for (text, want) in cases {
            assert_eq!(swap_laterality(text), want, "{text:?}");
        }
    }

    #[test]
    fn other_words_stay() {
        for text in [
            "leftward shift, bright spot, rightmost",
            "L and R markers",
            "lefts left2 Leftover",
            "",
            "no laterality here",
            "ünicode léft righté",
        ] {
            assert_eq!(swap_laterality(text), text, "{text:?}");
        }
        assert_eq!(swap_laterality("é right é"), "é left é");
    }
}
