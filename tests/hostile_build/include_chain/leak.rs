// include! of a package file not named .rs, which includes the host file
include!("leak.txt");
