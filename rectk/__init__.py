"""rectk: a recommender toolkit on JAX and Flax NNX.

The machinery lives here (registries, recipes, data, sharding, steps, the training loop,
checkpoints, evaluation, command line); the models, losses and data sets are plugins
(``rectk_plugins``) registered through the ``rectk.plugins`` entry-point group.
"""

from rectk import registry
from rectk.errors import DataError, PluginError, RecipeError, RectkError, TrainingError
from rectk.recipe import Recipe, load, registered

__version__ = "0.1.0"

__all__ = [
    "DataError",
    "PluginError",
    "Recipe",
    "RecipeError",
    "RectkError",
    "TrainingError",
    "load",
    "registered",
    "registry",
]
