"""The app's tabs, one module each: :mod:`~labeling_ui.tabs.label` (everyone),
:mod:`~labeling_ui.tabs.review` (reviewers), :mod:`~labeling_ui.tabs.admin` (admins) and
:mod:`~labeling_ui.tabs.reports` (the pipeline's run reports, when the caller hands in their renderer).
Each builds its components in place and registers its handlers through :mod:`labeling_ui.access`."""
