//! ImageDecoder (opset 20): a 1-D uint8 tensor holding an encoded image (PNG, JPEG, BMP,
//! TIFF, WebP, PNM, by the `image` crate; JPEG 2000 is refused) to `[H, W, 3]` RGB or BGR, or
//! `[H, W, 1]` grayscale. Grayscale is ITU-R 601-2 luma of the RGB pixels in fixed point, as
//! PIL's `convert("L")` (ONNX's reference) computes it; other decoders' luma weights differ.
use kiln_ir::{DataType, Dim};

use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{one, KernelCtx, KernelFn};
use crate::value::{Data, Tensor};

pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("", "ImageDecoder") => Some(run),
        _ => None,
    }
}

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let c = match ctx.str_attr("pixel_format").unwrap_or("RGB") {
        "Grayscale" => 1,
        _ => 3,
    };
    Ok(vec![Inferred::tensor(
        Some(DataType::U8),
        Some(vec![Dim::Unknown, Dim::Unknown, Dim::Known(c)]),
    )])
}

/// PIL's luma: `(19595 R + 38470 G + 7471 B + 2^15) >> 16`.
fn luma(p: &[u8]) -> u8 {
    ((19595 * p[0] as u32 + 38470 * p[1] as u32 + 7471 * p[2] as u32 + 0x8000) >> 16) as u8
}

pub fn run(ctx: &KernelCtx) -> Result<Vec<crate::value::Value>> {
    let x = ctx.tensor(0)?;
    let Data::U8(bytes) = &x.data else {
        return Err(format!("encoded_stream must be uint8, got {}", x.dtype()));
    };
    if x.rank() != 1 {
        return Err(format!(
            "encoded_stream must be 1-D, got shape {:?}",
            x.shape
        ));
    }
    let format = ctx.str_attr("pixel_format").unwrap_or("RGB");
    if !matches!(format, "RGB" | "BGR" | "Grayscale") {
        return Err(format!(
            "pixel_format must be RGB, BGR or Grayscale, got '{format}'"
        ));
    }
    let guessed =
        image::guess_format(bytes).map_err(|e| format!("cannot tell the image format: {e}"))?;
    let img = image::load_from_memory_with_format(bytes, guessed)
        .map_err(|e| format!("cannot decode the {guessed:?} image: {e}"))?;
    let rgb = img.to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let px = rgb.into_raw();
    let (c, data) = match format {
        "Grayscale" => (1, px.chunks_exact(3).map(luma).collect()),
        "BGR" => (
            3,
            px.chunks_exact(3)
                .flat_map(|p| [p[2], p[1], p[0]])
                .collect(),
        ),
        _ => (3, px),
    };
    one(Tensor::new(vec![h, w, c], Data::U8(data)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_matches_pil_weights() {
        assert_eq!(luma(&[255, 255, 255]), 255);
        assert_eq!(luma(&[255, 0, 0]), 76);
        assert_eq!(luma(&[0, 255, 0]), 150);
        assert_eq!(luma(&[0, 0, 255]), 29);
    }
}
