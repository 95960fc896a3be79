"""The SDK compiler: model graph → placement → SRAM tiling → micro-batch phases → core programs
and command streams (DESIGN.md §6). ``Target`` (the board's cores by role), ``Plan`` (HBM layout
and weight tiling), ``StepCompiler`` (one step's programs)."""

from sdk.compiler.plan import DTYPES, Plan
from sdk.compiler.step import Segment, StepCompiler, StepProgram
from sdk.compiler.target import PLACEMENTS, CompileError, Target

__all__ = ["CompileError", "DTYPES", "PLACEMENTS", "Plan", "Segment", "StepCompiler",
           "StepProgram", "Target"]
