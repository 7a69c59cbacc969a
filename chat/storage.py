"""The production static files storage: WhiteNoise's, with JavaScript module imports hashed.

ManifestStaticFilesStorage gives each collected file its content's hash in its name and
rewrites the references between files to those names, but in JavaScript only once
`support_js_module_import_aggregation` is on: then `import ... from "./composer.js"` in
static/js/chat/main.js becomes `"./composer.<hash>.js"` in main.<hash>.js. Without it the
browser would fetch the modules main.js imports by their plain names, which WhiteNoise
serves with a short cache lifetime, so a page could mix a new main.js with the previous
release's modules for a while after a deploy.
"""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    support_js_module_import_aggregation = True
