//! CURE's image conventions that OpenCV's other functions define: how its loader brings a
//! 16-bit image to 8 bits, and how albumentations 2.0.8's `CLAHE` treats the RGB images CURE
//! feeds it (on the L channel of CIELAB).
//!
//! * [`minmax_to_u8`]: `cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX, dtype=cv2.CV_8U)`:
//!   `a = 255 * (1 / (max - min))` and `b = 0 - min * a` in `f64` (both 0 when `max == min`), cast
//!   to `f32`; each sample becomes `round(fma(v, a, b))`, half to even, saturated (OpenCV's
//!   `cvt_32f` kernel in its AVX2 build; the fused operation is emulated in `f64` on CPUs without
//!   one, as in the warps).
//! * [`clahe_lab`]: albumentations runs CLAHE on an RGB image as `RGB2LAB -> CLAHE(L) -> LAB2RGB`
//!   (`augmentations/pixel/functional.py`, `clahe`). For a grey pixel `(v, v, v)` OpenCV's 8-bit
//!   `COLOR_RGB2LAB` gives `(L(v), 128, 128)`, and `COLOR_LAB2RGB` of `(L, 128, 128)` is a fixed
//!   triple: both are functions of one byte, tabulated below as OpenCV 5.0 computes them (its
//!   fixed-point tables are built at start-up with its software float; the values are recorded
//!   from `cv2.cvtColor` and checked against it on every test run, tests/test_augment_cure.py).
//!   The triple is grey except for 16 of the 256 values of L, where one channel is 1 level off.

use super::clahe::clahe;
use super::{Image, ImageRef, Sample};
use crate::error::{Error, Result};

/// `cv2.cvtColor(grey (v, v, v), COLOR_RGB2LAB)[0]` for `v = 0..=255` (a = b = 128).
pub const L_OF_GREY: [u8; 256] = [
    0, 1, 1, 2, 2, 3, 5, 5, 6, 7, 7, 8, 9, 9, 10, 11, 12, 12, 14, 15, 16, 17, 18, 19, 21, 23, 24,
    25, 27, 27, 28, 30, 31, 33, 34, 35, 36, 38, 39, 40, 41, 42, 43, 45, 46, 47, 48, 50, 51, 52, 53,
    54, 55, 57, 58, 59, 60, 61, 62, 63, 65, 66, 67, 68, 69, 70, 71, 73, 74, 75, 76, 77, 78, 79, 80,
    82, 82, 83, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 97, 98, 99, 100, 101, 102, 103, 104,
    105, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115, 116, 117, 119, 119, 121, 122, 123, 124,
    125, 126, 127, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 140, 141, 142, 143,
    144, 145, 146, 147, 148, 149, 150, 151, 152, 153, 154, 155, 156, 156, 157, 158, 159, 160, 161,
    162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, 173, 174, 175, 176, 177, 178, 179, 180,
    180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 190, 191, 192, 193, 194, 195, 196, 196, 197,
    198, 199, 200, 201, 202, 203, 204, 205, 206, 207, 208, 208, 209, 210, 211, 212, 213, 214, 215,
    216, 217, 218, 219, 219, 220, 221, 222, 223, 224, 225, 226, 227, 228, 228, 229, 230, 231, 232,
    233, 234, 235, 236, 237, 237, 238, 239, 240, 241, 242, 243, 244, 245, 245, 246, 247, 248, 249,
    250, 251, 252, 253, 253, 254, 255,
];

/// `cv2.cvtColor((L, 128, 128), COLOR_LAB2RGB)` for `L = 0..=255`.
pub const RGB_OF_L: [[u8; 3]; 256] = [
    [0, 0, 0],
    [2, 2, 2],
    [3, 3, 3],
    [4, 4, 4],
    [6, 6, 6],
    [6, 7, 7],
    [8, 9, 8],
    [10, 10, 10],
    [11, 11, 11],
    [13, 13, 13],
    [14, 14, 14],
    [15, 15, 15],
    [16, 16, 16],
    [17, 17, 17],
    [18, 18, 18],
    [19, 19, 19],
    [20, 20, 20],
    [21, 21, 21],
    [22, 22, 22],
    [23, 23, 23],
    [23, 23, 23],
    [24, 24, 24],
    [25, 25, 25],
    [25, 25, 25],
    [26, 26, 26],
    [27, 27, 27],
    [28, 28, 28],
    [29, 29, 29],
    [30, 29, 29],
    [30, 30, 30],
    [31, 31, 31],
    [32, 32, 32],
    [33, 33, 33],
    [34, 34, 34],
    [34, 34, 34],
    [35, 35, 35],
    [36, 36, 36],
    [36, 37, 36],
    [37, 38, 37],
    [38, 38, 38],
    [39, 39, 39],
    [40, 40, 40],
    [41, 41, 41],
    [42, 42, 42],
    [42, 43, 42],
    [43, 43, 43],
    [44, 44, 44],
    [45, 45, 45],
    [46, 46, 46],
    [47, 47, 47],
    [47, 48, 47],
    [48, 48, 48],
    [49, 49, 49],
    [50, 50, 50],
    [51, 51, 51],
    [52, 52, 52],
    [53, 52, 52],
    [53, 53, 53],
    [54, 54, 54],
    [55, 55, 55],
    [56, 56, 56],
    [57, 57, 57],
    [58, 58, 58],
    [58, 59, 59],
    [59, 59, 59],
    [60, 60, 60],
    [61, 61, 61],
    [62, 62, 62],
    [63, 63, 63],
    [64, 64, 64],
    [65, 65, 65],
    [66, 66, 66],
    [67, 67, 67],
    [67, 67, 67],
    [68, 68, 68],
    [69, 69, 69],
    [70, 70, 70],
    [71, 71, 71],
    [72, 72, 72],
    [73, 73, 73],
    [74, 74, 74],
    [75, 75, 75],
    [75, 76, 76],
    [77, 77, 77],
    [77, 77, 77],
    [78, 78, 78],
    [79, 79, 79],
    [80, 80, 80],
    [81, 81, 81],
    [82, 82, 82],
    [83, 83, 83],
    [84, 84, 84],
    [85, 85, 85],
    [86, 86, 86],
    [87, 87, 87],
    [88, 88, 88],
    [89, 89, 89],
    [90, 90, 90],
    [90, 90, 90],
    [91, 91, 91],
    [92, 92, 92],
    [93, 93, 93],
    [94, 94, 94],
    [95, 95, 95],
    [96, 96, 96],
    [97, 97, 97],
    [98, 98, 98],
    [99, 99, 99],
    [100, 100, 100],
    [101, 101, 101],
    [102, 102, 102],
    [103, 103, 103],
    [104, 104, 104],
    [105, 105, 105],
    [106, 106, 106],
    [107, 107, 107],
    [108, 108, 108],
    [109, 109, 109],
    [110, 110, 110],
    [111, 111, 111],
    [112, 112, 112],
    [112, 112, 112],
    [113, 114, 113],
    [115, 114, 114],
    [115, 115, 115],
    [116, 116, 116],
    [117, 117, 117],
    [118, 118, 118],
    [119, 119, 119],
    [120, 120, 120],
    [121, 121, 121],
    [122, 122, 122],
    [123, 123, 123],
    [124, 124, 124],
    [125, 125, 125],
    [126, 126, 126],
    [127, 127, 127],
    [128, 128, 128],
    [129, 129, 129],
    [130, 130, 130],
    [131, 131, 131],
    [132, 132, 132],
    [133, 133, 133],
    [134, 134, 134],
    [135, 135, 135],
    [136, 136, 136],
    [137, 137, 137],
    [138, 138, 138],
    [139, 139, 139],
    [140, 140, 140],
    [141, 141, 141],
    [143, 143, 142],
    [144, 144, 144],
    [145, 145, 144],
    [146, 146, 146],
    [147, 147, 147],
    [148, 148, 148],
    [149, 149, 149],
    [150, 150, 150],
    [151, 151, 151],
    [152, 152, 152],
    [153, 153, 153],
    [154, 154, 154],
    [155, 155, 155],
    [156, 156, 156],
    [157, 157, 157],
    [158, 158, 158],
    [159, 159, 159],
    [160, 160, 160],
    [161, 161, 161],
    [162, 162, 162],
    [163, 163, 163],
    [164, 164, 164],
    [165, 165, 165],
    [166, 166, 166],
    [167, 167, 167],
    [168, 168, 168],
    [169, 169, 169],
    [170, 171, 170],
    [172, 172, 172],
    [173, 173, 173],
    [174, 174, 174],
    [175, 175, 175],
    [176, 176, 176],
    [177, 177, 177],
    [178, 178, 178],
    [179, 179, 179],
    [180, 180, 180],
    [181, 181, 181],
    [182, 182, 182],
    [183, 183, 183],
    [184, 184, 184],
    [185, 185, 185],
    [186, 186, 186],
    [188, 188, 188],
    [189, 189, 189],
    [190, 190, 190],
    [191, 191, 191],
    [192, 192, 192],
    [193, 193, 193],
    [194, 194, 194],
    [195, 195, 195],
    [196, 196, 196],
    [197, 197, 197],
    [198, 198, 198],
    [199, 199, 199],
    [200, 200, 200],
    [202, 202, 202],
    [203, 203, 203],
    [204, 204, 204],
    [205, 205, 205],
    [206, 206, 206],
    [207, 207, 207],
    [208, 208, 208],
    [209, 209, 209],
    [210, 210, 210],
    [211, 211, 211],
    [212, 213, 212],
    [214, 214, 214],
    [215, 215, 215],
    [216, 216, 216],
    [217, 217, 217],
    [218, 218, 218],
    [219, 219, 219],
    [220, 220, 220],
    [221, 221, 221],
    [222, 222, 222],
    [224, 224, 224],
    [225, 225, 225],
    [226, 226, 226],
    [227, 227, 227],
    [228, 228, 228],
    [229, 229, 229],
    [230, 230, 230],
    [231, 231, 231],
    [232, 232, 232],
    [234, 234, 234],
    [235, 235, 235],
    [236, 236, 236],
    [237, 237, 237],
    [238, 238, 238],
    [239, 239, 239],
    [240, 240, 240],
    [241, 241, 241],
    [243, 243, 243],
    [244, 244, 244],
    [245, 245, 245],
    [246, 246, 246],
    [247, 247, 247],
    [248, 248, 248],
    [249, 249, 249],
    [250, 250, 250],
    [252, 252, 252],
    [253, 253, 253],
    [254, 254, 254],
    [255, 255, 255],
];

/// CURE's loader on a 16-bit image: min-max to 8 bits (see the module docs).
pub fn minmax_to_u8<T: Sample>(img: ImageRef<T>) -> Image<u8> {
    let (mut lo, mut hi) = (usize::MAX, 0usize);
    for v in img.data {
        lo = lo.min(v.to_usize());
        hi = hi.max(v.to_usize());
    }
    let (smin, smax) = (lo as f64, hi as f64);
    let scale = 255.0
        * (if smax - smin > f64::EPSILON {
            1.0 / (smax - smin)
        } else {
            0.0
        });
    let shift = 0.0 - smin * scale;
    let (a, b) = (scale as f32, shift as f32);
    let mut data = vec![0u8; img.data.len()];
    minmax_dispatch(img.data, a, b, &mut data);
    Image {
        width: img.width,
        height: img.height,
        channels: img.channels,
        data,
    }
}

fn minmax_dispatch<T: Sample>(src: &[T], a: f32, b: f32, out: &mut [u8]) {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        if std::is_x86_feature_detected!("fma") {
            // SAFETY: `minmax_fma` only requires the FMA instruction set, detected just above.
            unsafe { minmax_fma(src, a, b, out) };
            return;
        }
        for (d, v) in out.iter_mut().zip(src) {
            let r = (f64::from(v.to_f32()) * f64::from(a) + f64::from(b)) as f32;
            *d = u8::from_f32_rne(r);
        }
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    for (d, v) in out.iter_mut().zip(src) {
        *d = u8::from_f32_rne(v.to_f32().mul_add(a, b));
    }
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
#[target_feature(enable = "fma")]
fn minmax_fma<T: Sample>(src: &[T], a: f32, b: f32, out: &mut [u8]) {
    for (d, v) in out.iter_mut().zip(src) {
        *d = u8::from_f32_rne(v.to_f32().mul_add(a, b));
    }
}

/// CLAHE as albumentations applies it to CURE's RGB images, on an 8-bit image with 1 or 3
/// channels: `L = L_OF_GREY[v]`, CLAHE on L, then `RGB_OF_L[L']`. A grey (1-channel) image stands
/// for the RGB image `(v, v, v)` and keeps the green channel of the result; a 3-channel image whose
/// pixels are all grey gets the three channels. A 3-channel image with colour is returned
/// unchanged: its CIELAB conversion is not reproduced (radiographs are grey).
pub fn clahe_lab(
    img: ImageRef<u8>,
    clip_limit: f64,
    tiles_x: usize,
    tiles_y: usize,
) -> Result<Image<u8>> {
    let cn = img.channels;
    if cn != 1 && cn != 3 {
        return Err(Error::invalid(format!(
            "clahe (CIELAB): expected 1 or 3 channels, got {cn}"
        )));
    }
    if cn == 3
        && !img
            .data
            .chunks_exact(3)
            .all(|p| p[0] == p[1] && p[1] == p[2])
    {
        return Ok(Image {
            width: img.width,
            height: img.height,
            channels: 3,
            data: img.data.to_vec(),
        });
    }
    let (lut_l, lut_rgb) = (&L_OF_GREY, &RGB_OF_L);
    let mut l = vec![0u8; img.width * img.height];
    if cn == 1 {
        for (d, &v) in l.iter_mut().zip(img.data) {
            *d = lut_l[v as usize];
        }
    } else {
        for (d, p) in l.iter_mut().zip(img.data.chunks_exact(3)) {
            *d = lut_l[p[0] as usize];
        }
    }
    let l = clahe(
        ImageRef::new(img.width, img.height, 1, &l)?,
        clip_limit,
        tiles_x,
        tiles_y,
    )?;
    let mut data = vec![0u8; l.data.len() * cn];
    if cn == 1 {
        let green: [u8; 256] = std::array::from_fn(|i| lut_rgb[i][1]);
        for (d, &v) in data.iter_mut().zip(&l.data) {
            *d = green[v as usize];
        }
    } else {
        for (d, &v) in data.chunks_exact_mut(3).zip(&l.data) {
            d.copy_from_slice(&lut_rgb[v as usize]);
        }
    }
    Ok(Image {
        width: img.width,
        height: img.height,
        channels: cn,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_monotone_and_end_at_black_and_white() {
        assert!(L_OF_GREY.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!((L_OF_GREY[0], L_OF_GREY[255]), (0, 255));
        assert_eq!((RGB_OF_L[0], RGB_OF_L[255]), ([0, 0, 0], [255, 255, 255]));
        let off = RGB_OF_L
            .iter()
            .filter(|p| p[0] != p[1] || p[1] != p[2])
            .count();
        assert_eq!(off, 16);
        assert!(RGB_OF_L
            .iter()
            .all(|p| p.iter().max().unwrap() - p.iter().min().unwrap() <= 1));
    }

    #[test]
    fn minmax_stretches_to_the_byte_range() {
        let img = Image {
            width: 4,
            height: 1,
            channels: 1,
            data: vec![1000u16, 1500, 2000, 3000],
        };
        // a = float(255 / 2000) = 0.12749999761..., b = -127.5: 0, 63.75, 127.499995, 255
        // (as cv2.normalize gives)
        assert_eq!(minmax_to_u8(img.view()).data, vec![0, 64, 127, 255]);
        let flat = Image {
            width: 2,
            height: 1,
            channels: 1,
            data: vec![7u16, 7],
        };
        assert_eq!(minmax_to_u8(flat.view()).data, vec![0, 0]);
    }

    #[test]
    fn colour_images_pass_unchanged_and_grey_ones_match_the_single_channel() {
        let colour = Image {
            width: 2,
            height: 1,
            channels: 3,
            data: vec![1u8, 2, 3, 4, 5, 6],
        };
        assert_eq!(clahe_lab(colour.view(), 2.0, 1, 1).unwrap(), colour);
        let grey: Vec<u8> = (0..64).map(|i| (i * 4) as u8).collect();
        let g1 = Image {
            width: 8,
            height: 8,
            channels: 1,
            data: grey.clone(),
        };
        let g3 = Image {
            width: 8,
            height: 8,
            channels: 3,
            data: grey.iter().flat_map(|&v| [v; 3]).collect(),
        };
        let one = clahe_lab(g1.view(), 2.0, 2, 2).unwrap();
        let three = clahe_lab(g3.view(), 2.0, 2, 2).unwrap();
        let green: Vec<u8> = three.data.chunks_exact(3).map(|p| p[1]).collect();
        assert_eq!(one.data, green);
    }
}
