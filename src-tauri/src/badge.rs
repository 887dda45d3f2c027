//! The tray icon's image: the online count drawn into a coloured disc.
//!
//! No platform has a native tray badge, and the Linux tray shows neither
//! tooltip nor (on most desktops) title, so the number must be in the image.
//! Digits come from a tiny built-in 5×7 bitmap font, scaled to fit, so there
//! is no font file to ship and the result is the same on every machine.

/// Side of the square icon, in pixels.
pub const SIZE: u32 = 64;

/// The disc's colour, by connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Connected and joined.
    Online,
    /// Connecting or reconnecting.
    Waiting,
    /// Offline, or the user left the channel.
    Offline,
}

impl Tone {
    fn rgb(self) -> [u8; 3] {
        match self {
            Tone::Online => [0x1a, 0x7f, 0x37],
            Tone::Waiting => [0xb0, 0x78, 0x00],
            Tone::Offline => [0x6b, 0x6b, 0x73],
        }
    }
}

/// An RGBA image, row-major, `SIZE`×`SIZE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Badge {
    /// The text drawn: the count, `99+`, or `–` when there is none.
    pub text: String,
    /// Pixels, 4 bytes each.
    pub rgba: Vec<u8>,
}

/// 5×7 glyphs, one row per byte, high bit = leftmost of the 5 columns.
fn glyph(c: char) -> [u8; 7] {
    match c {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        '+' => [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00],
        _ => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00], // '–'
    }
}

/// The text for a count: `0`–`99`, then `99+`; `–` when unknown.
pub fn label(count: Option<usize>) -> String {
    match count {
        None => "–".into(),
        Some(n) if n > 99 => "99+".into(),
        Some(n) => n.to_string(),
    }
}

/// Draws the badge for a count.
pub fn render(count: Option<usize>, tone: Tone) -> Badge {
    let text = label(count);
    let size = SIZE as usize;
    let mut rgba = vec![0u8; size * size * 4];
    let [r, g, b] = tone.rgb();
    // The disc, with a one-pixel soft edge.
    let c = (SIZE as f32 - 1.0) / 2.0;
    let radius = SIZE as f32 / 2.0 - 1.0;
    for y in 0..size {
        for x in 0..size {
            let d = ((x as f32 - c).powi(2) + (y as f32 - c).powi(2)).sqrt();
            let alpha = (radius - d + 0.5).clamp(0.0, 1.0);
            let i = (y * size + x) * 4;
            rgba[i..i + 4].copy_from_slice(&[r, g, b, (alpha * 255.0) as u8]);
        }
    }
    // The text: glyphs 5 wide with 1 column between, as large as fits in
    // 80 % of the width and 60 % of the height.
    let chars: Vec<char> = text.chars().collect();
    let cols = chars.len() * 6 - 1;
    let scale = ((size * 8 / 10) / cols).min((size * 6 / 10) / 7).max(1);
    let (w, h) = (cols * scale, 7 * scale);
    let (x0, y0) = ((size - w) / 2, (size - h) / 2);
    for (k, ch) in chars.iter().enumerate() {
        let rows = glyph(*ch);
        for (row, bits) in rows.iter().enumerate() {
            for col in 0..5 {
                if bits & (0x10 >> col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let x = x0 + (k * 6 + col) * scale + dx;
                        let y = y0 + row * scale + dy;
                        let i = (y * size + x) * 4;
                        rgba[i..i + 4].copy_from_slice(&[255, 255, 255, 255]);
                    }
                }
            }
        }
    }
    Badge { text, rgba }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn white(b: &Badge) -> usize {
        b.rgba
            .chunks(4)
            .filter(|p| p == &[255, 255, 255, 255])
            .count()
    }

    #[test]
    fn labels() {
        assert_eq!(label(Some(0)), "0");
        assert_eq!(label(Some(7)), "7");
        assert_eq!(label(Some(99)), "99");
        assert_eq!(label(Some(100)), "99+");
        assert_eq!(label(Some(12_345)), "99+");
        assert_eq!(label(None), "–");
    }

    #[test]
    fn digits_are_drawn() {
        let b = render(Some(8), Tone::Online);
        assert_eq!(b.rgba.len(), (SIZE * SIZE * 4) as usize);
        // '8' has 17 lit cells in the 5×7 font; each is scale² pixels.
        let lit = white(&b);
        assert!(lit > 0 && lit.is_multiple_of(17), "{lit}");
        // The centre column of an '8' passes through lit cells, the corner is transparent.
        assert_eq!(b.rgba[3], 0, "corner is transparent");
    }

    #[test]
    fn every_count_gives_a_different_image() {
        let images: Vec<Vec<u8>> = (0..=100)
            .map(|n| render(Some(n), Tone::Online).rgba)
            .collect();
        for i in 0..images.len() {
            for j in i + 1..images.len() {
                assert_ne!(images[i], images[j], "{i} and {j} look the same");
            }
        }
        assert_eq!(
            render(Some(100), Tone::Online),
            render(Some(5000), Tone::Online)
        );
        assert_eq!(render(Some(150), Tone::Online).text, "99+");
    }

    #[test]
    fn tone_changes_the_disc_not_the_digits() {
        let a = render(Some(3), Tone::Online);
        let b = render(Some(3), Tone::Offline);
        assert_ne!(a.rgba, b.rgba);
        assert_eq!(white(&a), white(&b));
    }
}
