//! RV64M: multiplication and division (division by zero and overflow follow the IR's total
//! division, which is exactly RISC-V's).

use super::{TResult, Tr};
use crate::decode::Args;
use tessera_dbt::Op;

alu!(mul, Mul);
alu!(mulh, MulHS);
alu!(mulhsu, MulHSU);
alu!(mulhu, MulHU);
alu!(div, Div);
alu!(divu, DivU);
alu!(rem, Rem);
alu!(remu, RemU);
alu!(mulw, MulW);
alu!(divw, DivW);
alu!(divuw, DivUW);
alu!(remw, RemW);
alu!(remuw, RemUW);
