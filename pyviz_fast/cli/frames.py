"""Renders that keep their progression, for ``--gif``.

The engine returns only final images, so a progression is rendered as ``frames`` consecutive
segments of ``steps / frames`` steps: segment k starts from segment k-1's image (init='image'),
with its own seed so its jitter differs. The schedules (blur, lr) restart in each segment,
so a ``--gif`` run's final image is close to, not identical with, a run without ``--gif``;
the PNG written beside the GIF is its last frame.

>>> frames, result = render_progression(model, unit, settings, frames=8, seed=0)
>>> len(frames), frames[-1].size   # PIL images, first = the initial image
(9, (128, 128))
"""
import io

from PIL import Image

from pyviz_fast.audit.files import to_pil


def render_progression(model, unit, settings, *, frames: int, seed: int, backend, device, init_image=None):
    """([PIL frame per segment, starting with the initial image], last RenderResult) for one unit."""
    import pyviz_fast as pvf

    frames = max(1, min(frames, settings.steps))
    per, extra = divmod(settings.steps, frames)
    images, image, result = [], init_image, None
    for k in range(frames):
        steps = per + (extra if k == frames - 1 else 0)
        segment = settings.replace(steps=steps, octaves=1 if k else min(settings.octaves, steps))
        if image is not None:
            segment = segment.replace(init="image", init_image=image)
        result = pvf.render(model, [unit], segment, backend=backend, device=device, seed=seed + k,
                            batch_size=1, progress=False)
        frame = to_pil(result.to_uint8()[0])
        if k == 0 and init_image is not None:  # the photo as the first frame, at the output size
            images.append(to_pil(_uint8(init_image)).resize(frame.size, Image.BILINEAR))
        image = result.images[0]
        images.append(frame)
        if result.status[0] == "failed":
            break
    return images, result


def _uint8(image):
    return (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def gif_bytes(frames: list[Image.Image], frame_ms: int = 200) -> bytes:
    """An endlessly looping GIF; the last frame is held three times as long."""
    buffer = io.BytesIO()
    durations = [frame_ms] * (len(frames) - 1) + [3 * frame_ms]
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0)
    return buffer.getvalue()
