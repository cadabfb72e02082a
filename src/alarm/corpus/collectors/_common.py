"""Value tables shared by several specs (for the ``map:`` template filter)."""

GENDER = {"F": "female", "M": "male", "f": "female", "m": "male", "Female": "female", "Male": "male"}
