"""The one domain exception of panoptic_ros."""


class PanopticError(ValueError):
    """Bad input at a boundary (file, config, message, dataset).

    The message says what was expected and what was received, so a user can fix the input
    without reading the code.
    """
