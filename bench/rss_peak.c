/*
 * Runs a command and samples its anonymous resident memory (RssAnon in
 * /proc/PID/status) every 2 milliseconds while it runs; when it has exited,
 * prints "rss_peak <KiB>" and exits with its status. The kernel keeps no
 * peak of RssAnon (VmHWM counts the LMDB map's file pages too), hence the
 * sampling.
 *
 *   rss_peak COMMAND ARGS...
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long rss_anon(pid_t pid) {
  char path[64], line[256];
  long kib = -1;
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "RssAnon:", 8) == 0) {
      kib = strtol(line + 8, NULL, 10);
      break;
    }
  fclose(f);
  return kib;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs("usage: rss_peak COMMAND ARGS...\n", stderr);
    return 2;
  }
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    return 2;
  }
  if (pid == 0) {
    execvp(argv[1], argv + 1);
    perror(argv[1]);
    _exit(127);
  }
  long peak = 0;
  int status;
  const struct timespec ms = {0, 2000000}; /* 2 ms */
  for (;;) {
    long kib = rss_anon(pid);
    if (kib > peak) peak = kib;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0) {
      perror("waitpid");
      return 2;
    }
    nanosleep(&ms, NULL);
  }
  printf("rss_peak %ld\n", peak);
  if (WIFSIGNALED(status)) {
    fprintf(stderr, "rss_peak: %s killed by signal %d\n", argv[1],
            WTERMSIG(status));
    return 128 + WTERMSIG(status);
  }
  return WEXITSTATUS(status);
}
