"""The parts of ``python -m study.report``: queries (``data``), a section's frame and headings
(``part``), figures and tables (``sections``, ``results``, ``ranking``), the written answers
(``summary``) and the HTML page (``page``)."""
