"""Known failures of the sweep sample, in one place, each with its reason.

The sample test runs these as strict xfails: a fix makes the test pass unexpectedly, which fails
the run until the entry is removed here.
"""

SAM_LAYOUT = ("the encoder (SAM-style windowed attention) returns 3-D weights [windows*heads, q, k]; the capture "
              "refuses them with a warning naming the layer instead of guessing a layout")

KNOWN = {
    "pp_formulanet": SAM_LAYOUT,
}
