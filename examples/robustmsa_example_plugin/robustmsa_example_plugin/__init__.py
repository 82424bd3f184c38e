"""An example robustmsa model plugin (its model registers when :mod:`.models` is imported)."""
