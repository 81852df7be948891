"""Names shared by the plugin, the CLI and the files tb_varmap writes."""

PLUGIN_NAME = "varmap"
DISPLAY_NAME = "VarMap"

# Everything tb_varmap writes for a run lives in <run_dir>/OUTPUT_DIRNAME/.
OUTPUT_DIRNAME = "varmap"
TAGS_FILENAME = "tags.json"
MODEL_FILENAME = "model.keras"
REPORT_FILENAME = "report.json"

TAGS_FORMAT_VERSION = 1
REPORT_FORMAT_VERSION = 1

# State-changing requests must carry this header (cross-site forms cannot set it).
CSRF_HEADER = "X-VarMap-Request"

MAX_REQUEST_BYTES = 2 * 1024 * 1024
