"""The parts of ``python -m study.report``: queries (``data``), figures and tables
(``sections``, ``ranking``), the written answers (``summary``) and the HTML page (``page``)."""
