"""Every image mode reaches the pipeline as uint8 RGB [3,H,W], equal to Pillow's
``convert("RGB")`` — except 16-bit samples, which are scaled down to their high byte
(Pillow's own down-scaling of 16-bit colour PNGs; Pillow would clip 16-bit grey)."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import mlcore
from mlcore.data.images import pil_to_tensor, read_image

from conftest import run_cli, tiny_config, write_yaml

H, W = 5, 7


def write_png16(path, arr) -> None:
    """A 16-bit PNG from uint16 H×W (grey) or H×W×C (2 grey+alpha, 3 RGB, 4 RGBA), written
    chunk by chunk: Pillow cannot save 16-bit colour PNGs."""
    arr = np.asarray(arr, dtype=">u2")
    if arr.ndim == 2:
        arr = arr[..., None]
    h, w, c = arr.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def pillow_rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).transpose(2, 0, 1)


def check(t: torch.Tensor, want: np.ndarray) -> None:
    assert t.dtype == torch.uint8 and t.shape == (3, H, W) and t.is_contiguous()
    np.testing.assert_array_equal(t.numpy(), want)


def palette_image(rng) -> Image.Image:
    p = Image.fromarray(rng.integers(0, 4, (H, W), dtype=np.uint8), "P")
    p.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30])
    return p


def eight_bit_files(tmp_path):
    """(name, path, Pillow mode) of 8-bit and smaller images in every mode, real formats."""
    rng = np.random.default_rng(0)
    u8 = lambda *shape: rng.integers(0, 256, shape, dtype=np.uint8)  # noqa: E731
    out = []

    def save(im, name, **kw):
        p = tmp_path / name
        im.save(p, **kw)
        with Image.open(p) as back:
            out.append((name, p, back.mode))

    save(Image.fromarray(u8(H, W), "L"), "grey.png")
    save(Image.fromarray(u8(H, W), "L"), "grey.jpg", quality=95)
    save(Image.fromarray(u8(H, W, 3), "RGB"), "rgb.png")
    save(Image.fromarray(u8(H, W, 3), "RGB"), "rgb.jpg", quality=75)  # 4:2:0 chroma
    save(Image.fromarray(u8(H, W, 3), "RGB"), "rgb.webp", quality=60)
    save(Image.fromarray(u8(H, W, 4), "RGBA"), "rgba.webp", lossless=True)
    save(Image.fromarray(u8(H, W, 4), "RGBA"), "rgba.png")
    save(Image.fromarray(u8(H, W, 2), "LA"), "la.png")
    save(palette_image(rng), "palette.png")
    save(palette_image(rng), "palette_key.png", transparency=1)
    save(palette_image(rng), "palette_alpha.png", transparency=bytes([0, 128, 255, 255]))
    save(Image.fromarray(u8(H, W, 3) // 60 * 60, "RGB"), "rgb_key.png", transparency=(60, 60, 60))
    save(Image.fromarray(u8(H, W, 4), "CMYK"), "cmyk.jpg", quality=95)
    save(Image.fromarray(u8(H, W) > 127), "bits.png")
    save(Image.fromarray(u8(H, W) > 127), "bits.tif")
    save(Image.fromarray(u8(H, W, 3), "RGB"), "rgb.bmp")
    save(palette_image(rng), "palette.gif")
    save(palette_image(rng), "palette_key.gif", transparency=1)  # torchvision's GIF decoder blanks these
    frames = [palette_image(rng) for _ in range(3)]
    save(frames[0], "animated.gif", save_all=True, append_images=frames[1:])  # first frame only
    save(Image.fromarray(rng.integers(-100, 70000, (H, W)).astype(np.int32), "I"), "int32.tif")
    save(Image.fromarray((rng.random((H, W)) * 300 - 20).astype(np.float32), "F"), "float.tif")
    return out


@pytest.mark.filterwarnings("ignore:Palette images with Transparency")
def test_every_mode_reads_as_pillow_converts_it(tmp_path):
    files = eight_bit_files(tmp_path)
    modes = {mode for _, _, mode in files}
    assert {"L", "RGB", "RGBA", "LA", "P", "CMYK", "1", "I", "F"} <= modes
    for name, path, mode in files:
        want = pillow_rgb(path)
        try:
            check(read_image(path), want)
        except AssertionError as exc:
            raise AssertionError(f"{name} ({mode}): {exc}") from None


@pytest.mark.filterwarnings("ignore:Palette images with Transparency")
def test_pil_images_of_every_mode(tmp_path):
    for name, path, mode in eight_bit_files(tmp_path):
        with Image.open(path) as im:
            check(pil_to_tensor(im), np.asarray(im.convert("RGB")).transpose(2, 0, 1))


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16_bit_png_scales_to_its_high_byte(tmp_path, channels):
    rng = np.random.default_rng(channels)
    a = rng.integers(0, 65536, (H, W) + ((channels,) if channels > 1 else ()), dtype=np.uint16)
    a.flat[:4] = [255, 256, 65535, 0x80FF]
    path = tmp_path / "deep.png"
    write_png16(path, a)
    got = read_image(path)
    grey = a if channels == 1 else a[..., 0]
    rgb = np.stack([grey] * 3) if channels <= 2 else a[..., :3].transpose(2, 0, 1)
    check(got, (rgb >> 8).astype(np.uint8))
    if channels >= 2:  # colour and grey+alpha: exactly what Pillow gives
        check(got, pillow_rgb(path))
    else:  # grey: Pillow clips ("I;16" → "RGB" is min(v, 255)); its down-scaling is the high byte
        with Image.open(path) as im:
            assert im.mode == "I;16"
            assert (np.asarray(im.convert("RGB"))[..., 0] == np.minimum(a, 255)).all()
        with_alpha = tmp_path / "deep_la.png"
        write_png16(with_alpha, np.stack([a, np.full_like(a, 65535)], -1))
        check(got, pillow_rgb(with_alpha))
        # the Pillow fallback and PIL images agree with the fast decoder
        with Image.open(path) as im:
            check(pil_to_tensor(im), got.numpy())


def test_16_bit_pil_images_and_tiffs(tmp_path):
    rng = np.random.default_rng(7)
    a = rng.integers(0, 65536, (H, W), dtype=np.uint16)
    want = np.stack([(a >> 8).astype(np.uint8)] * 3)
    im = Image.fromarray(a)
    assert im.mode == "I;16"
    check(pil_to_tensor(im), want)
    big = Image.frombytes("I;16B", (W, H), a.astype(">u2").tobytes())
    check(pil_to_tensor(big), want)
    tif = tmp_path / "deep.tif"
    im.save(tif)
    with Image.open(tif) as back:
        assert back.mode.startswith("I;16")
    check(read_image(tif), want)


def test_predict_takes_16_bit_and_odd_mode_pil_images(tmp_path):
    exp = mlcore.build(tiny_config(tmp_path / "run"))
    a = np.random.default_rng(0).integers(0, 65536, (H, W), dtype=np.uint16)
    path = tmp_path / "deep.png"
    write_png16(path, a)
    images = [str(path), Image.fromarray(a), Image.new("CMYK", (W, H), (10, 20, 30, 40)),
              Image.new("1", (W, H), 1)]
    probs = exp.predict(images)
    assert probs.shape == (4, len(exp.classes)) and torch.isfinite(probs).all()


def test_cli_predict_on_a_16_bit_png(tmp_path):
    cfg = tiny_config(tmp_path / "run")
    cfg["train"]["epochs"] = 1
    path = write_yaml(tmp_path / "cfg.yaml", cfg)
    train = run_cli("train", path)
    assert train.returncode == 0, train.stderr
    a = np.random.default_rng(1).integers(0, 65536, (40, 40, 3), dtype=np.uint16)
    rgb16, grey16 = tmp_path / "rgb16.png", tmp_path / "grey16.png"
    write_png16(rgb16, a)
    write_png16(grey16, a[..., 0])
    proc = run_cli("predict", path, rgb16, grey16)
    assert proc.returncode == 0, proc.stderr
    assert "rgb16.png" in proc.stdout and "grey16.png" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_predict_on_no_image_and_on_what_is_not_an_image(tmp_path):
    exp = mlcore.build(tiny_config(tmp_path / "run"))
    assert exp.predict([]).shape == (0, 10)
    assert exp.predict(torch.zeros(0, 3, 32, 32, dtype=torch.uint8)).shape == (0, 10)
    with pytest.raises(mlcore.MlcoreError, match="got a ndarray among the images"):
        exp.predict([np.zeros((32, 32, 3), dtype=np.uint8)])
    with pytest.raises(mlcore.MlcoreError, match="cannot convert an image of mode 'La' to RGB"):
        exp.predict(Image.new("La", (W, H)))
