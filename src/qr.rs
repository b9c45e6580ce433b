//! QR codes of proxy links, rendered on this host (the secret never goes to a web service):
//! PNG (8-bit grey, 8 pixels a module, 4-module quiet zone) and SVG files, written to a
//! per-user folder with modes 0700/0600 because a link carries the secret. The terminal form
//! lives in `share::qr_terminal`.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use qrcode::{Color, QrCode};

#[derive(Debug, thiserror::Error)]
pub enum QrError {
    #[error("the link does not fit in a QR code: {0}")]
    Encode(qrcode::types::QrError),
    #[error("cannot write {path}: {err}")]
    Write { path: PathBuf, err: std::io::Error },
    #[error("cannot encode the PNG: {0}")]
    Png(png::EncodingError),
}

const SCALE: usize = 8;
const QUIET: usize = 4;

/// The PNG image of a QR code of `text`.
pub fn png(text: &str) -> Result<Vec<u8>, QrError> {
    let code = QrCode::new(text.as_bytes()).map_err(QrError::Encode)?;
    let w = code.width();
    let colors = code.to_colors();
    let side = (w + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, c) in colors.iter().enumerate() {
        if *c == Color::Dark {
            let (mx, my) = (i % w + QUIET, i / w + QUIET);
            for y in my * SCALE..(my + 1) * SCALE {
                pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, side as u32, side as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(QrError::Png)?;
    writer.write_image_data(&pixels).map_err(QrError::Png)?;
    writer.finish().map_err(QrError::Png)?;
    Ok(out)
}

/// The SVG document of a QR code of `text`.
pub fn svg(text: &str) -> Result<String, QrError> {
    let code = QrCode::new(text.as_bytes()).map_err(QrError::Encode)?;
    Ok(code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(256, 256).quiet_zone(true).build())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), QrError> {
    let werr = |err| QrError::Write { path: path.to_path_buf(), err };
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(werr)?;
    f.write_all(bytes).map_err(werr)
}

/// Write `<dir>/<user>/proxy.png` and/or `proxy.svg` for `link`; returns the paths written.
pub fn write_files(dir: &Path, user: &str, link: &str, want_png: bool, want_svg: bool) -> Result<Vec<PathBuf>, QrError> {
    let folder = dir.join(user);
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&folder).map_err(|err| QrError::Write { path: folder.clone(), err })?;
    let mut written = Vec::new();
    if want_png {
        let p = folder.join("proxy.png");
        write_private(&p, &png(link)?)?;
        written.push(p);
    }
    if want_svg {
        let p = folder.join("proxy.svg");
        write_private(&p, svg(link)?.as_bytes())?;
        written.push(p);
    }
    Ok(written)
}
