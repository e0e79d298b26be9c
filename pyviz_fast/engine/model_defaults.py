"""Settings defaults that depend on the model, for the fields the caller left at their defaults.

- A model that declares the one input size it runs at (torchvision's ViT: ``image_size``) is
  rendered at that size, in one octave: ``Settings().size`` or a smaller octave (a zoom's
  default two) would fail its forward.
- Facets of a model that cuts its input into patches use the Fourier parameterization
  (``goals/diversity.py``: ``with_facet_defaults``).

>>> settings = with_model_defaults(Settings(facets=3), vit_b_16, given={"facets"})
>>> settings.size, settings.param
(224, 'fourier')
"""
from pyviz_fast.engine.goals.diversity import with_facet_defaults
from pyviz_fast.engine.models import declared_input_size


def with_model_defaults(settings, model, given):
    """``settings`` with the model's own defaults for the fields whose names are not in ``given``."""
    size = declared_input_size(model)
    if size is not None and "size" not in given:
        settings = settings.replace(size=size)
    if size is not None and "octaves" not in given and settings.octaves > 1:
        settings = settings.replace(octaves=1)
    return with_facet_defaults(settings, model, "param" in given)
