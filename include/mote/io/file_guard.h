// One guard for every file a command writes. Every file the command reads
// is noted (the readers note them themselves; the command line's input
// options are noted as they are parsed), and every path it will write is
// checked against them, and against its other outputs, twice: when it is
// named (before any work) and again when it is written (after files read
// on the way, such as a mask's includes). A refused path changes nothing on
// disk.
#pragma once

#include <filesystem>
#include <string>

namespace mote {

// Notes a file the command reads; `what` says what it is in messages
// ("the file --prompts names"). A directory (the model's) notes every file
// directly in it. A path that does not exist notes nothing: its reader will
// say so.
void note_input(const std::filesystem::path& path, const std::string& what);

// Checks a path the command will write, before any work, and reserves it:
// it must not be a file the command reads, nor a path another output of
// the command named (`what` names the option, "--csv"), nor a directory,
// device, FIFO or socket, nor a symbolic link to one or to nothing; its
// directory must exist and be writable.
void claim_output(const std::filesystem::path& path, const std::string& what);

// The checks of claim_output() except the reservation, at write time.
void check_output(const std::filesystem::path& path, const std::string& what);

// check_output() on every path claimed so far, against the inputs noted
// since (a command that notes more inputs after claiming its outputs).
void check_claimed_outputs();

// Forgets every input and output (tests run several commands in one process).
void reset_file_guard();

}  // namespace mote
