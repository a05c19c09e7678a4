"""The web console at ``/console/``: sign in, start bulk analysis jobs (from S3 or uploaded
images), browse their results, verify predictions, train adapters, moderate one image.

Server-rendered pages (Jinja2, autoescaped) with a little plain JavaScript, all served by the
server itself; every action goes through the API's own operations (``RekognitionApi.call``).
``app.build_console`` assembles it; ``demo`` runs it over an embedded S3 server.
"""
