//! QR codes decode to the exact links: the PNG and SVG files, and the terminal rendering, read
//! back with the `rqrr` decoder (pure Rust, no system package).

mod cli_common;

use std::os::unix::fs::PermissionsExt;

use cli_common::{Env, BASE};

fn decode(w: usize, h: usize, dark: impl Fn(usize, usize) -> bool) -> String {
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| if dark(x, y) { 0 } else { 255 });
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    grids[0].decode().unwrap().1
}

/// The terminal form: Unicode half blocks, light modules drawn (for dark terminals).
fn decode_terminal(out: &str) -> String {
    let lines: Vec<Vec<char>> = out.lines().filter(|l| l.contains('█') || l.contains('▀') || l.contains('▄')).map(|l| l.chars().collect()).collect();
    let w = lines.iter().map(Vec::len).max().unwrap();
    let scale = 4;
    decode(w * scale, lines.len() * 2 * scale, |x, y| {
        let (cx, cy) = (x / scale, y / scale);
        let c = lines[cy / 2].get(cx).copied().unwrap_or(' ');
        let drawn = if cy % 2 == 0 { matches!(c, '█' | '▀') } else { matches!(c, '█' | '▄') };
        !drawn
    })
}

fn decode_png(bytes: &[u8]) -> String {
    let dec = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    let w = info.width as usize;
    decode(w, info.height as usize, |x, y| buf[y * w + x] < 128)
}

/// The SVG form: a background rect and one path of `M{x} {y}h{w}v{h}H{x}V{y}` squares.
fn decode_svg(svg: &str) -> String {
    let size: usize = svg.split("width=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
    let d = svg.split(" d=\"").nth(1).unwrap().split('"').next().unwrap();
    let mut dark = vec![false; size * size];
    for sq in d.split('M').filter(|s| !s.is_empty()) {
        let nums: Vec<usize> = sq.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
        let (x, y, w, h) = (nums[0], nums[1], nums[2], nums[3]);
        for yy in y..y + h {
            for xx in x..x + w {
                dark[yy * size + xx] = true;
            }
        }
    }
    decode(size, size, |x, y| dark[y * size + x])
}

#[test]
fn terminal_png_and_svg_decode_to_the_exact_link() {
    let env = Env::new(Some(BASE));
    let qr_dir = env.dir.path().join("codes");
    let out = env.ok(&["show-user-config", "bob", "--png", "--svg", "--qr-dir", qr_dir.to_str().unwrap()]);
    let link = "https://t.me/proxy?server=proxy.example.org&port=18443&secret=eeaaaaaa11112233445566778899aabbcc7777772e6578616d706c652e636f6d";
    assert!(out.contains(link));
    assert_eq!(decode_terminal(&out), link);
    let png_path = qr_dir.join("bob/proxy.png");
    let svg_path = qr_dir.join("bob/proxy.svg");
    assert_eq!(decode_png(&std::fs::read(&png_path).unwrap()), link);
    assert_eq!(decode_svg(&std::fs::read_to_string(&svg_path).unwrap()), link);
    for p in [&png_path, &svg_path] {
        assert_eq!(std::fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o600, "a QR code carries the secret");
    }
    assert_eq!(std::fs::metadata(qr_dir.join("bob")).unwrap().permissions().mode() & 0o777, 0o700);
}

#[test]
fn new_users_and_rotations_print_a_readable_code() {
    let env = Env::new(Some(BASE));
    let out = env.ok(&["add-user", "carol", "--with-padding"]);
    let link = env.json(&["show-user-config", "carol", "--json"])["links"]["tme"].as_str().unwrap().to_string();
    assert_eq!(decode_terminal(&out), link);
    let out = env.ok(&["regenerate-user-secret", "carol", "--png"]);
    let link = env.json(&["show-user-config", "carol", "--json"])["links"]["tme"].as_str().unwrap().to_string();
    assert_eq!(decode_terminal(&out), link);
    // Default folder: `qr/<user>` next to the config file.
    assert_eq!(decode_png(&std::fs::read(env.dir.path().join("qr/carol/proxy.png")).unwrap()), link);
}
