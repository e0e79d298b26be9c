"""Images as an HTML grid for notebooks: PNGs inlined, a caption under each, a cap on how many.

>>> grid = image_grid([res.to_pil(i) for i in range(4)], captions=[str(u) for u in res.units[:4]])
>>> grid  # in Jupyter: the grid. pvf.show(res, cols=4) displays one from anywhere in a cell
"""
import base64
import html
import io

DEFAULT_LIMIT = 64  # images shown; a layer of 512 channels would make a notebook of megabytes


class ImageGrid:
    """HTML of images in a grid; Jupyter displays it through ``_repr_html_``."""

    def __init__(self, markup: str):
        self.markup = markup

    def _repr_html_(self):
        return self.markup

    def __repr__(self):
        return f"ImageGrid({len(self.markup)} characters of HTML)"


def _png_data_uri(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def check_layout(cols, limit, size):
    if cols < 1 or limit < 0 or size < 1:
        raise ValueError(f"cols and size must be >= 1 and limit >= 0; got cols={cols}, limit={limit}, size={size}")


def image_grid(images, captions=(), *, titles=(), total=None, cols=8, limit=DEFAULT_LIMIT, size=128,
               heading="") -> ImageGrid:
    """images: PIL images (at most ``limit`` are drawn); captions: text under each image (lines
    split by newlines; escaped); titles: hover text per image; total: how many images there are
    in all (default len(images)), to say how many were left out. ``cols`` per row, each image
    drawn ``size`` px wide (pixelated when enlarged)."""
    check_layout(cols, limit, size)
    shown = min(len(images), limit)
    count = len(images) if total is None else total
    cells = []
    for i in range(shown):
        caption = "<br>".join(html.escape(line) for line in (captions[i] if i < len(captions) else "").split("\n"))
        title = html.escape(titles[i]) if i < len(titles) else ""
        cells.append(f'<figure style="margin:0;text-align:center" title="{title}">'
                     f'<img src="{_png_data_uri(images[i])}" '
                     f'style="width:{size}px;image-rendering:pixelated;display:block">'
                     f'<figcaption style="font:11px monospace;width:{size}px;overflow-wrap:anywhere">'
                     f'{caption}</figcaption></figure>')
    more = f'<div style="font:12px monospace">{count - shown} more not shown (limit={limit})</div>' \
        if shown < count else ""
    head = f'<div style="font:12px monospace;margin-bottom:4px">{html.escape(heading)}</div>' if heading else ""
    grid = (f'<div style="display:grid;grid-template-columns:repeat({cols},{size}px);gap:6px">'
            + "".join(cells) + "</div>")
    return ImageGrid(f"<div>{head}{grid}{more}</div>")


def show(result, cols=8, limit=None, size=128):
    """Shows a ``RenderResult`` (or a list of PIL images) as a grid: displayed in IPython/Jupyter
    (returns None there), else returned as an ``ImageGrid``."""
    if hasattr(result, "to_html_grid"):
        return display(result.to_html_grid(cols=cols, limit=limit, size=size))
    return display(image_grid(list(result), cols=cols, limit=DEFAULT_LIMIT if limit is None else limit, size=size))


def display(obj):
    """Displays ``obj`` in IPython/Jupyter when running there (and returns None), else returns it."""
    try:
        from IPython import get_ipython
        from IPython.display import display as ipython_display
    except ImportError:
        return obj
    if get_ipython() is not None:
        ipython_display(obj)
        return None
    return obj
