//! The MedCLM Easy-stage overlay (docs/curriculum.md, "MedCLM stages": the Easy stage draws the
//! boxes on the image): box outlines drawn onto the image.
//!
//! Pixel rule. Boxes are continuous pixel coordinates `[x1, y1, x2, y2]` where pixel `i` spans
//! `[i, i + 1)` (the convention of the manifest and of [`super::warp::warp_boxes`]). A box covers
//! the pixels it overlaps: columns `floor(x1) ..= ceil(x2) - 1` and rows `floor(y1) ..= ceil(y2) - 1`,
//! so an integer box `[10, 10, 20, 20]` covers pixels 10..=19 in each direction. The outline is
//! the `thickness` outermost pixel rings of that rectangle (it never grows outside the box; a box
//! thinner than `2 * thickness` is filled). Drawing is clipped to the image: the parts of a box
//! outside the image are not drawn, as `cv2.rectangle` does. Boxes with a non-finite coordinate
//! or no area (`x2 <= x1` or `y2 <= y1`) draw nothing; corners may come in either order.

use super::{BoxXyxy, Image, Sample};

/// Draw the outline of each box, `thickness` pixels wide, with `value` (one per channel).
///
/// `value` gives one sample per channel; a shorter `value` repeats its last entry (so a single
/// value paints every channel), an empty one draws nothing. Never panics, whatever the boxes.
pub fn draw_boxes<T: Sample>(img: &mut Image<T>, boxes: &[BoxXyxy], thickness: usize, value: &[T]) {
    let (w, h, c) = (img.width, img.height, img.channels);
    if value.is_empty()
        || thickness == 0
        || w == 0
        || h == 0
        || c == 0
        || w.checked_mul(h).and_then(|p| p.checked_mul(c)) != Some(img.data.len())
    {
        return;
    }
    let colour: Vec<T> = (0..c).map(|k| value[k.min(value.len() - 1)]).collect();
    let t = i64::try_from(thickness).unwrap_or(i64::MAX);
    let (wi, hi) = (w as i64, h as i64);
    let stride = w * c;

    for b in boxes {
        if b.iter().any(|v| !v.is_finite()) {
            continue;
        }
        let (x1, x2) = (b[0].min(b[2]), b[0].max(b[2]));
        let (y1, y2) = (b[1].min(b[3]), b[1].max(b[3]));
        if x2 <= x1 || y2 <= y1 {
            continue;
        }
        // Inclusive pixel bounds (float -> int casts saturate, so huge boxes are safe).
        let (c0, c1) = (x1.floor() as i64, (x2.ceil() as i64).saturating_sub(1));
        let (r0, r1) = (y1.floor() as i64, (y2.ceil() as i64).saturating_sub(1));
        let top_end = r0.saturating_add(t - 1).min(r1);
        let bottom_start = r1.saturating_sub(t - 1).max(r0);
        let left_end = c0.saturating_add(t - 1).min(c1);
        let right_start = c1.saturating_sub(t - 1).max(c0);

        let fill = |row: &mut [T], a: i64, z: i64| {
            let (a, z) = (a.max(0), z.min(wi - 1));
            if a <= z {
                let span = &mut row[a as usize * c..(z as usize + 1) * c];
                if c == 1 {
                    span.fill(colour[0]);
                } else {
                    for px in span.chunks_exact_mut(c) {
                        px.copy_from_slice(&colour);
                    }
                }
            }
        };
        for r in r0.max(0)..=r1.min(hi - 1) {
            let row = &mut img.data[r as usize * stride..(r as usize + 1) * stride];
            if r <= top_end || r >= bottom_start {
                fill(row, c0, c1);
            } else {
                fill(row, c0, left_end);
                fill(row, right_start, c1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank(w: usize, h: usize, c: usize) -> Image<u8> {
        Image::new(w, h, c)
    }

    fn render(img: &Image<u8>) -> Vec<String> {
        img.data
            .chunks(img.width)
            .map(|r| r.iter().map(|&v| if v > 0 { '#' } else { '.' }).collect())
            .collect()
    }

    #[test]
    fn integer_box_outline_stays_inside_the_box() {
        let mut img = blank(8, 6, 1);
        draw_boxes(&mut img, &[[1.0, 1.0, 6.0, 5.0]], 1, &[255]);
        assert_eq!(
            render(&img),
            ["........", ".#####..", ".#...#..", ".#...#..", ".#####..", "........"]
        );
    }

    #[test]
    fn fractional_box_covers_the_pixels_it_touches() {
        let mut img = blank(8, 6, 1);
        // x: floor(0.5) = 0 ..= ceil(3.2) - 1 = 3; y: 1 ..= 3.
        draw_boxes(&mut img, &[[0.5, 1.9, 3.2, 3.01]], 1, &[9]);
        assert_eq!(
            render(&img),
            ["........", "####....", "#..#....", "####....", "........", "........"]
        );
        assert_eq!(img.data[8], 9);
    }

    #[test]
    fn thick_outline_and_small_box_filled() {
        let mut img = blank(9, 9, 1);
        draw_boxes(&mut img, &[[0.0, 0.0, 9.0, 9.0]], 2, &[1]);
        let r = render(&img);
        assert_eq!(r[0], "#########");
        assert_eq!(r[1], "#########");
        assert_eq!(r[2], "##.....##");
        assert_eq!(r[7], "#########");
        let mut img = blank(5, 5, 1);
        draw_boxes(&mut img, &[[1.0, 1.0, 4.0, 4.0]], 2, &[1]);
        assert_eq!(render(&img), [".....", ".###.", ".###.", ".###.", "....."]);
    }

    #[test]
    fn clipped_to_the_image_and_colour_per_channel() {
        let mut img = blank(4, 3, 3);
        draw_boxes(&mut img, &[[-10.0, 1.0, 2.0, 100.0]], 1, &[1, 2, 3]);
        // Rows 1..=2 are inside; the left edge (x = -10) and bottom edge (y = 99) are outside;
        // the top edge at row 1 spans columns 0..=1, the right edge is column 1.
        let px = |x: usize, y: usize| &img.data[(y * 4 + x) * 3..(y * 4 + x) * 3 + 3];
        assert_eq!(px(0, 1), [1, 2, 3]);
        assert_eq!(px(1, 1), [1, 2, 3]);
        assert_eq!(px(1, 2), [1, 2, 3]);
        assert_eq!(px(0, 2), [0, 0, 0]);
        assert_eq!(px(2, 1), [0, 0, 0]);
        assert!(img.data[..12].iter().all(|&v| v == 0));
        // A single value paints every channel.
        let mut img = blank(2, 2, 3);
        draw_boxes(&mut img, &[[0.0, 0.0, 2.0, 2.0]], 1, &[7]);
        assert!(img.data.iter().all(|&v| v == 7));
    }

    #[test]
    fn never_panics() {
        let mut img = Image::<u16>::new(5, 4, 1);
        let boxes = [
            [f64::NAN, 0.0, 1.0, 1.0],
            [0.0, f64::INFINITY, 1.0, 1.0],
            [1e300, -1e300, -1e300, 1e300],
            [-5.0, -5.0, -1.0, -1.0],
            [10.0, 10.0, 20.0, 20.0],
            [2.0, 2.0, 2.0, 3.0],
            [3.0, 3.0, 1.0, 1.0],
        ];
        draw_boxes(&mut img, &boxes, usize::MAX, &[65535]);
        draw_boxes(&mut img, &boxes, 1, &[]);
        // The reversed box [3, 3, 1, 1] is the box [1, 1, 3, 3]; the huge one covers everything.
        assert!(img.data.iter().all(|&v| v == 65535));
        let mut bad = Image::<u8> {
            width: 4,
            height: 4,
            channels: 1,
            data: vec![0; 3],
        };
        draw_boxes(&mut bad, &[[0.0, 0.0, 4.0, 4.0]], 1, &[1]);
        assert_eq!(bad.data, vec![0; 3]);
    }
}
